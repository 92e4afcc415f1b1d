/** `etaflow experiment list | run | report`: arms × seeds of declared pipelines, compared with paired errors. */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { experiments } from "../experiments/builtin.ts"
import { loadExperiment } from "../experiments/load.ts"
import { runExperiment } from "../experiments/run.ts"
import { writeComparison } from "../experiments/write.ts"
import { clusterRun } from "./cluster.ts"
import { usageOrStore } from "./shared.ts"

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

export const experimentCmd = Command.make("experiment").pipe(
  Command.withDescription("Arms × seeds of declared pipelines, compared with paired errors and computed verdicts"),
  Command.withSubcommands([experimentList, experimentRun, experimentReport])
)
