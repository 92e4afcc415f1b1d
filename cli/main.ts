/**
 * The `etaflow` command. Exit codes: 0 success, 1 failure while running, 2 bad usage or config
 * (reported before any run folder is made).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import { experiments } from "../experiments/builtin.ts"
import { loadExperiment } from "../experiments/load.ts"
import { runExperiment } from "../experiments/run.ts"
import { writeComparison } from "../experiments/write.ts"
import { StoreError, UsageError } from "../kernel/errors.ts"
import { runPipeline } from "../kernel/run.ts"
import { packageVersions } from "../kernel/versions.ts"
import { exportRun } from "../pipelines/export.ts"
import { findPipeline, pipelines } from "../pipelines/registry.ts"
import { Replay } from "../pipelines/replay.ts"
import { KEEP, pruneRun } from "../pipelines/rl-retention.ts"
import { sample, SAMPLER_NAMES } from "../pipelines/sample.ts"
import { writeReport } from "../report/report.ts"
import { messageOf } from "../schemas/message.ts"
import { settingsHelp } from "../schemas/settings.ts"
import { clusterRun, runnerCommand } from "./cluster.ts"
import { inspect } from "./inspect.ts"
import { verifyCommand } from "./verify.ts"

const lookup = (name: string) =>
  Effect.fromNullishOr(findPipeline(name)).pipe(
    Effect.mapError(() =>
      new UsageError({ message: `unknown pipeline "${name}"; available: ${pipelines.map((p) => p.name).join(", ")}` })
    )
  )

const readConfigFile = (file: string) =>
  Effect.try({
    try: () => {
      const value = JSON.parse(fs.readFileSync(file, "utf8")) as unknown
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new Error("expected a JSON object of settings")
      }
      return value as Record<string, unknown>
    },
    catch: (e) => new UsageError({ message: `--config ${file}: ${messageOf(e)}` })
  })

const list = Command.make(
  "list",
  {},
  () => Console.log(pipelines.map((p) => `${p.name.padEnd(14)} ${p.doc}`).join("\n"))
).pipe(Command.withDescription("List the pipelines, one per line"))

const run = Command.make(
  "run",
  {
    pipeline: Argument.String("pipeline").pipe(Argument.withDescription("pipeline name (see `etaflow list`)")),
    set: Flag.KeyValuePair("set").pipe(Flag.withDescription("override one setting (repeatable)"), Flag.optional),
    config: Flag.String("config").pipe(
      Flag.withDescription("JSON file of settings (applied before --set)"),
      Flag.optional
    ),
    seed: Flag.Int("seed").pipe(Flag.withDescription("seed of every random stream of the run"), Flag.withDefault(0)),
    out: Flag.String("out").pipe(
      Flag.withDescription("the run directory (default runs/<pipeline>-<timestamp>)"),
      Flag.optional
    ),
    resume: Flag.String("resume").pipe(
      Flag.withDescription("continue the run in this directory after its last complete iteration"),
      Flag.optional
    ),
    progress: Flag.Literals("progress", ["auto", "bar", "lines", "none"]).pipe(
      Flag.withDescription("progress display on stderr"),
      Flag.withDefault("auto")
    )
  },
  Effect.fn("cli.run")(function*(args) {
    const pipeline = yield* lookup(args.pipeline)
    const config = Option.isSome(args.config) ? yield* readConfigFile(args.config.value) : undefined
    const result = yield* runPipeline(pipeline, {
      ...(config === undefined ? {} : { config }),
      ...(Option.isSome(args.set) ? { set: args.set.value } : {}),
      seed: args.seed,
      ...(Option.isSome(args.out) ? { out: args.out.value } : {}),
      ...(Option.isSome(args.resume) ? { resume: args.resume.value } : {}),
      progress: args.progress
    })
    yield* Console.log(result.dir)
  })
).pipe(
  Command.withDescription(
    "Run a pipeline; the last line printed is the run directory. `etaflow run <pipeline> --help` lists its settings"
  )
)

const inspectCmd = Command.make(
  "inspect",
  {
    target: Argument.String("target").pipe(Argument.withDescription("a run directory or a .parquet file")),
    json: Flag.Boolean("json").pipe(Flag.withDescription("machine-readable output"), Flag.withDefault(false))
  },
  ({ target, json }) => Effect.flatMap(inspect(target, json), Console.log)
).pipe(Command.withDescription("Show schema, row counts and last metrics of a run or a Parquet file"))

const replay = Command.make(
  "replay",
  {
    source: Argument.String("run-dir").pipe(Argument.withDescription("the stored run to replay")),
    from: Flag.String("from").pipe(
      Flag.withDescription("stage to restart at (rollout, rewards, advantages, update, evaluation, …)")
    ),
    set: Flag.KeyValuePair("set").pipe(Flag.withDescription("change one setting (repeatable)"), Flag.optional),
    out: Flag.String("out").pipe(Flag.withDescription("the new run directory"), Flag.optional),
    progress: Flag.Literals("progress", ["auto", "bar", "lines", "none"]).pipe(Flag.withDefault("auto"))
  },
  Effect.fn("cli.replay")(function*(args) {
    const result = yield* Replay.fromRun(args.source).from(args.from).with(
      Option.isSome(args.set) ? args.set.value : {},
      {
        ...(Option.isSome(args.out) ? { out: args.out.value } : {}),
        progress: args.progress
      }
    )
    yield* Console.log(result.dir)
  })
).pipe(
  Command.withDescription("Re-run a stored run from a node onward, reading that node's inputs from the stored Parquet")
)

/** A command's failure: its usage errors as they are (exit 2), anything else a StoreError naming the file. */
const usageOrStore = (file: string) => (e: unknown): UsageError | StoreError =>
  e instanceof UsageError ? e : new StoreError({ file, message: messageOf(e) })

const report = Command.make(
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

const exportCmd = Command.make(
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
    Effect.try({
      try: () => {
        const which = iteration === "best" || iteration === "last" ? iteration : Number(iteration)
        if (typeof which === "number" && !Number.isSafeInteger(which)) {
          throw new UsageError({ message: `export: --iteration must be a number, best or last (given: ${iteration})` })
        }
        const files = exportRun(dir, { iteration: which, ema, ...(Option.isSome(cfg) ? { cfg: cfg.value } : {}), out })
        return files.join("\n")
      },
      catch: usageOrStore(out)
    }).pipe(Effect.flatMap(Console.log))
).pipe(Command.withDescription("Write an RL run's policy as ONNX + safetensors + meta.json (any ONNX runtime runs it)"))

const sampleCmd = Command.make(
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

const prune = Command.make(
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

const experimentList = Command.make(
  "list",
  {},
  () =>
    Console.log(
      experiments.map((e) => `${e.name.padEnd(14)} ${e.doc}${e.budget === undefined ? "" : ` [${e.budget}]`}`).join(
        "\n"
      )
    )
).pipe(Command.withDescription("List the built-in experiments, one per line"))

const experimentRun = Command.make(
  "run",
  {
    target: Argument.String("experiment").pipe(Argument.withDescription("a built-in name or a .ts file defining one")),
    seeds: Flag.Int("seeds").pipe(
      Flag.withDescription("run seeds 0 … N − 1 (more seeds later: only the new run)"),
      Flag.optional
    ),
    set: Flag.KeyValuePair("set").pipe(
      Flag.withDescription("key=value for every arm that has the key, arm.key=value for one arm (repeatable)"),
      Flag.optional
    ),
    out: Flag.String("out").pipe(
      Flag.withDescription("the experiment folder (default runs/experiments/<name>)"),
      Flag.optional
    ),
    progress: Flag.Literals("progress", ["auto", "bar", "lines", "none"]).pipe(Flag.withDefault("lines")),
    cluster: Flag.String("cluster").pipe(
      Flag.withDescription("submit the runs to the runners of this PostgreSQL (postgres://user@host:5432/db)"),
      Flag.optional
    ),
    root: Flag.String("root").pipe(
      Flag.withDescription("with --cluster: the shared folder every runner sees (folder: ROOT/experiments/<name>)"),
      Flag.optional
    )
  },
  Effect.fn("cli.experiment.run")(function*(args) {
    const def = yield* Effect.tryPromise({ try: () => loadExperiment(args.target), catch: usageOrStore(args.target) })
    const cluster = yield* clusterRun(args.target, def, args)
    const out = yield* runExperiment(def, {
      ...(Option.isSome(args.seeds) ? { seeds: args.seeds.value } : {}),
      ...(Option.isSome(args.set) ? { set: args.set.value } : {}),
      ...(Option.isSome(args.out) ? { out: args.out.value } : {}),
      ...(cluster === undefined ? {} : cluster),
      progress: args.progress
    })
    yield* Console.log(out)
  })
).pipe(
  Command.withDescription(
    "Run an experiment's missing runs (complete ones are skipped, interrupted ones resumed) and compare them"
  )
)

const experimentReport = Command.make(
  "report",
  { dir: Argument.String("experiment-dir").pipe(Argument.withDescription("an experiment folder")) },
  ({ dir }) =>
    Effect.try({ try: () => writeComparison(dir).join("\n"), catch: usageOrStore(`${dir}/comparison.parquet`) }).pipe(
      Effect.flatMap(Console.log)
    )
).pipe(Command.withDescription("Rebuild comparison.parquet, comparison.md and findings.md from an experiment's runs"))

const experimentCmd = Command.make("experiment").pipe(
  Command.withDescription("Arms × seeds of declared pipelines, compared with paired errors and computed verdicts"),
  Command.withSubcommands([experimentList, experimentRun, experimentReport])
)

const etaflow = Command.make("etaflow").pipe(
  Command.withDescription("RL post-training of diffusion and flow models as typed Effect DAGs with Arrow/Parquet runs"),
  Command.withSubcommands([
    list,
    run,
    replay,
    inspectCmd,
    report,
    prune,
    verifyCommand,
    exportCmd,
    sampleCmd,
    experimentCmd,
    runnerCommand
  ])
)

/** `etaflow run <pipeline> --help` describes that pipeline's settings, which the generic help cannot. */
const pipelineHelp = (argv: ReadonlyArray<string>): string | undefined => {
  if (argv[0] !== "run" || !(argv.includes("--help") || argv.includes("-h"))) return undefined
  const p = argv[1] === undefined ? undefined : findPipeline(argv[1])
  if (p === undefined) return undefined
  return [
    `etaflow run ${p.name} — ${p.doc}`,
    "",
    `USAGE\n  etaflow run ${p.name} [--set key=value]… [--config file.json] [--seed N] [--out DIR] [--resume DIR] ` +
    `[--progress auto|bar|lines|none]`,
    "",
    "SETTINGS (key, default, meaning)",
    settingsHelp(p.settings)
  ].join("\n")
}

const USAGE_TAGS = new Set([
  "UsageError",
  "UnrecognizedOption",
  "DuplicateOption",
  "MissingOption",
  "MissingArgument",
  "UnexpectedArgument",
  "InvalidValue",
  "UnknownSubcommand",
  "ValidationError",
  "ShowHelp"
])

const argv = process.argv.slice(2)
const help = pipelineHelp(argv)
const program = help !== undefined
  ? Console.log(help)
  : Command.runWith(etaflow, { version: packageVersions().etaflow })(argv)

// runMain interrupts the program on SIGINT and SIGTERM; which one arrived decides the exit code.
let signalled: number | undefined
process.once("SIGINT", () => (signalled ??= 2))
process.once("SIGTERM", () => (signalled ??= 15))

program.pipe(
  Effect.tapCause((cause) =>
    Effect.sync(() => {
      if (Cause.hasInterruptsOnly(cause)) return void process.stderr.write("etaflow: interrupted\n")
      const error = Cause.squash(cause) as { _tag?: string; message?: string }
      // effect/cli has already rendered its own parse errors.
      if (error._tag !== undefined && USAGE_TAGS.has(error._tag) && error._tag !== "UsageError") return
      process.stderr.write(`etaflow: ${error.message ?? String(error)}\n`)
    })
  ),
  Effect.provide(NodeServices.layer),
  (effect) =>
    NodeRuntime.runMain(effect, {
      disableErrorReporting: true,
      teardown: (exit, onExit) => {
        if (Exit.isSuccess(exit)) return onExit(0)
        // Interrupted by a signal: the shell's convention, 128 + the signal number.
        if (Cause.hasInterruptsOnly(exit.cause)) return onExit(128 + (signalled ?? 2))
        const error = Cause.squash(exit.cause) as { _tag?: string }
        onExit(error._tag !== undefined && USAGE_TAGS.has(error._tag) ? 2 : 1)
      }
    })
)
