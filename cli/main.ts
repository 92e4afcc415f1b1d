/**
 * The `etaflow` command. Exit codes: 0 success, 1 failure while running, 2 bad usage or config
 * (reported before any run folder is made).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import { UsageError } from "../kernel/errors.ts"
import { runPipeline } from "../kernel/run.ts"
import { packageVersions } from "../kernel/versions.ts"
import { findPipeline, pipelines } from "../pipelines/registry.ts"
import { Replay } from "../pipelines/replay.ts"
import { messageOf } from "../schemas/message.ts"
import { settingsHelp } from "../schemas/settings.ts"
import { runnerCommand } from "./cluster.ts"
import { experimentCmd } from "./experiment.ts"
import { inspect } from "./inspect.ts"
import { exportCmd, prune, report, sampleCmd } from "./run-folder.ts"
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
