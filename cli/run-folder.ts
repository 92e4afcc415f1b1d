/** The commands on a stored run folder: its report, an export of its weights, samples from it, pruning. */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import { SAMPLER_NAMES } from "../diffusion/samplers.ts"
import { UsageError } from "../kernel/errors.ts"
import { exportRun } from "../pipelines/export.ts"
import { pruneRun } from "../pipelines/rl-retention.ts"
import { sample } from "../pipelines/sample.ts"
import { writeReport } from "../report/report.ts"
import { KEEP } from "../schemas/retention.ts"
import { usageOrStore } from "./shared.ts"

export const report = Command.make(
  "report",
  { dir: Argument.String("run-dir").pipe(Argument.withDescription("a run directory")) },
  ({ dir }) =>
    Effect.try({
      try: () => {
        if (!fs.existsSync(`${dir}/manifest.json`)) {
          throw new UsageError({ message: `report: ${dir} is not a run folder (no manifest.json)` })
        }
        return writeReport(dir)
      },
      catch: usageOrStore(`${dir}/report.html`)
    }).pipe(Effect.flatMap(Console.log))
).pipe(Command.withDescription("Write report.html (curves, gap, diagnostics, sample grids, config) into a run folder"))

export const exportCmd = Command.make(
  "export",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("an RL run directory")),
    iteration: Flag.String("iteration").pipe(
      Flag.withDescription("an iteration number, best (largest ODE improvement) or last"),
      Flag.withDefault("last")
    ),
    ema: Flag.Boolean("ema").pipe(Flag.withDescription("export the EMA of the weights"), Flag.withDefault(false)),
    cfg: Flag.Finite("cfg").pipe(
      Flag.withDescription("CFG scale folded into the graph (default: the run's)"),
      Flag.optional
    ),
    out: Flag.String("out").pipe(
      Flag.withDescription("the folder to write policy.onnx, weights.safetensors, meta.json")
    )
  },
  ({ dir, iteration, ema, cfg, out }) =>
    Effect.tryPromise({
      try: async () => {
        const which = iteration === "best" || iteration === "last" ? iteration : Number(iteration)
        if (typeof which === "number" && !Number.isSafeInteger(which)) {
          throw new UsageError({ message: `export: --iteration must be a number, best or last (given: ${iteration})` })
        }
        const files = await exportRun(dir, {
          iteration: which,
          ema,
          ...(Option.isSome(cfg) ? { cfg: cfg.value } : {}),
          out
        })
        return files.join("\n")
      },
      catch: usageOrStore(out)
    }).pipe(Effect.flatMap(Console.log))
).pipe(Command.withDescription("Write an RL run's policy as ONNX + safetensors + meta.json (any ONNX runtime runs it)"))

export const sampleCmd = Command.make(
  "sample",
  {
    source: Argument.String("source").pipe(Argument.withDescription("an RL run directory or an exported policy")),
    prompts: Flag.String("prompts").pipe(
      Flag.withDescription("digits, one grid row each"),
      Flag.withDefault("0,1,2,3,4,5,6,7,8,9")
    ),
    n: Flag.Int("n").pipe(Flag.withDescription("samples per prompt"), Flag.withDefault(8)),
    sampler: Flag.Literals("sampler", SAMPLER_NAMES).pipe(Flag.withDescription("sampler"), Flag.withDefault("ode")),
    steps: Flag.Int("steps").pipe(Flag.withDescription("sampling steps"), Flag.withDefault(10)),
    eta: Flag.Finite("eta").pipe(Flag.withDescription("the sampler's noise level"), Flag.withDefault(0)),
    seed: Flag.Int("seed").pipe(Flag.withDescription("seed of the noise (same seed, same noise)"), Flag.withDefault(0)),
    evalNoise: Flag.Boolean("eval-noise").pipe(
      Flag.withDescription("sample the evaluation's prompts and noise (its ODE samples, bit for bit)"),
      Flag.withDefault(false)
    ),
    format: Flag.Literals("format", ["png", "parquet"]).pipe(
      Flag.withDescription("output format"),
      Flag.withDefault("png")
    ),
    out: Flag.String("out").pipe(Flag.withDescription("the file to write"))
  },
  (args) =>
    Effect.tryPromise({
      try: () => {
        const prompts = args.prompts.split(",").map((p) => Number(p.trim()))
        if (prompts.some((p) => !Number.isInteger(p) || p < 0 || p > 9) || args.n < 1 || args.steps < 1) {
          throw new UsageError({
            message: `sample: --prompts must be digits 0-9 (given: ${args.prompts}); --n and --steps ≥ 1`
          })
        }
        return sample(args.source, { ...args, prompts, noise: args.eta, threads: 2 })
      },
      catch: usageOrStore(args.out)
    }).pipe(Effect.flatMap(Console.log))
).pipe(
  Command.withDescription("Sample a run's (or an exported) policy into a PNG grid or Parquet; same seed, same noise")
)

export const prune = Command.make(
  "prune",
  {
    dir: Argument.String("run-dir").pipe(Argument.withDescription("an RL run directory")),
    keep: Flag.Literals("keep", KEEP).pipe(Flag.withDescription("the retention policy the folder keeps from now on"))
  },
  ({ dir, keep }) =>
    Effect.try({
      try: () => {
        const removed = pruneRun(dir, keep)
        return `${dir}: removed ${removed.length} files and folders; it now keeps ${keep}`
      },
      catch: usageOrStore(dir)
    }).pipe(Effect.flatMap(Console.log))
).pipe(Command.withDescription("Thin an RL run folder to a retention policy (default or minimal; see `keep`)"))
