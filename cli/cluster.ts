/**
 * The cluster side of the command: `etaflow runner`, and the checks `experiment run --cluster` makes
 * before any folder exists (the URL, the root, the database reachable, the folder under the root).
 */
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { ClusterUrl } from "../experiments/cluster/database.ts"
import { DEFAULT_TIMING } from "../experiments/cluster/timing.ts"
import type { ExperimentDef } from "../experiments/experiment.ts"
import { UsageError } from "../kernel/errors.ts"
import { packageVersions } from "../kernel/versions.ts"

/**
 * The cluster's modules (effect/cluster, effect/workflow, the PostgreSQL client), loaded when a cluster
 * command runs: at start-up they cost every other command ~1 s.
 */
const cluster = Effect.promise(async () => ({
  ...(await import("../experiments/cluster/database.ts")),
  ...(await import("../experiments/cluster/executor.ts")),
  ...(await import("../experiments/cluster/runner.ts"))
}))

/** A check that throws a UsageError, as an Effect failing with it. */
const usage = <A>(f: () => A) =>
  Effect.try({ try: f, catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: String(e) })) })

const stamp = (who: string) => (line: string) => process.stdout.write(`${new Date().toISOString()} [${who}] ${line}\n`)

const parseAddress = (text: string) => {
  const m = /^(.+):(\d+)$/.exec(text)
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new UsageError({ message: `--address ${text}: expected host:port (the address other runners reach)` })
  }
  return { host: m[1], port: Number(m[2]) }
}

/**
 * The runner's port is free on this machine: a second runner started with the first's default address
 * would otherwise die at launch with the socket's bare "Open" error.
 */
const portFree = (address: { readonly host: string; readonly port: number }, flag: string) =>
  Effect.callback<void, UsageError>((resume) => {
    const server = net.createServer()
    server.once("error", (e: NodeJS.ErrnoException) =>
      resume(Effect.fail(
        new UsageError({
          message: `--address ${flag}: port ${address.port} is ${
            e.code === "EADDRINUSE"
              ? "in use on this machine (another etaflow runner?)"
              : `not available (${e.message})`
          }; give this runner another one, e.g. --address ${address.host}:${address.port + 1}`
        })
      )))
    server.listen(address.port, () => server.close(() => resume(Effect.void)))
  })

/** The database answers: checked before any folder exists, so a wrong URL is exit 2 with nothing made. */
const reachable = (url: ClusterUrl) =>
  Effect.flatMap(cluster, ({ clusterDatabase }) => Effect.scoped(Layer.build(clusterDatabase(url)))).pipe(Effect.asVoid)

export const runnerCommand = Command.make(
  "runner",
  {
    cluster: Flag.String("cluster").pipe(
      Flag.withDescription("the cluster's PostgreSQL, postgres://user@host:5432/db")
    ),
    root: Flag.String("root").pipe(Flag.withDescription("the shared folder holding the experiments (same on all)")),
    address: Flag.String("address").pipe(
      Flag.withDescription("host:port where other runners reach this one (default: this host's name, port 34431)"),
      Flag.withDefault(`${os.hostname()}:34431`)
    ),
    runs: Flag.Int("runs").pipe(Flag.withDescription("runs carried at once (default 1)"), Flag.withDefault(1)),
    threads: Flag.Int("threads").pipe(
      Flag.withDescription("onnxruntime threads of each run this runner starts (default: the run's setting)"),
      Flag.optional
    ),
    lease: Flag.Finite("lease").pipe(
      Flag.withDescription("seconds a dead runner's runs stay claimed before another runner resumes them (default 60)"),
      Flag.withDefault(DEFAULT_TIMING.leaseMs / 1000)
    ),
    poll: Flag.Finite("poll").pipe(
      Flag.withDescription("seconds between looks for new runs and messages (default 1; ~10 queries per look)"),
      Flag.withDefault(DEFAULT_TIMING.pollMs / 1000)
    )
  },
  Effect.fn("cli.runner")(function*(args) {
    const { checkRoot, parseClusterUrl, runnerLayer } = yield* cluster
    const url = yield* usage(() => parseClusterUrl(args.cluster))
    const address = yield* usage(() => parseAddress(args.address))
    yield* usage(() => checkRoot(args.root))
    yield* portFree(address, args.address)
    if (args.runs < 1) return yield* new UsageError({ message: `--runs ${args.runs}: at least 1` })
    if (!(args.lease > 0)) return yield* new UsageError({ message: `--lease ${args.lease}: seconds, more than 0` })
    if (!(args.poll > 0 && args.poll < args.lease)) {
      return yield* new UsageError({ message: `--poll ${args.poll}: seconds, more than 0 and less than --lease` })
    }
    const log = stamp(`runner ${address.host}:${address.port}`)
    log(
      `etaflow ${packageVersions().etaflow}, pid ${process.pid}, root ${
        path.resolve(args.root)
      }, ${args.runs} run(s) ` +
        `at once, cluster ${url.host}:${url.port}/${url.database}`
    )
    yield* Layer.launch(runnerLayer({
      cluster: url,
      root: path.resolve(args.root),
      address,
      runs: args.runs,
      ...(Option.isSome(args.threads) ? { threads: args.threads.value } : {}),
      timing: { leaseMs: args.lease * 1000, pollMs: args.poll * 1000 },
      log
    })).pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => log("stopping: runs in progress end at their last commit and go back to the queue"))
      )
    )
  })
).pipe(Command.withDescription("Join a cluster as a runner: take experiment runs from PostgreSQL and carry them out"))

export interface ClusterFlags {
  readonly cluster: Option.Option<string>
  readonly root: Option.Option<string>
  readonly out: Option.Option<string>
  readonly seeds: Option.Option<number>
  readonly set: Option.Option<Record<string, string>>
}

/**
 * For `experiment run --cluster URL --root DIR`: the folder (default DIR/experiments/<name>) and
 * the executor, after every check that can fail; `undefined` without `--cluster`.
 */
export const clusterRun = (target: string, def: ExperimentDef, flags: ClusterFlags) =>
  Effect.gen(function*() {
    if (Option.isNone(flags.cluster)) {
      if (Option.isSome(flags.root)) return yield* new UsageError({ message: "--root goes with --cluster" })
      return undefined
    }
    if (Option.isNone(flags.root)) {
      return yield* new UsageError({ message: "--cluster needs --root: the shared folder every runner sees" })
    }
    const [text, root] = [flags.cluster.value, path.resolve(flags.root.value)]
    const { checkRoot, clusterExecutor, parseClusterUrl } = yield* cluster
    const url = yield* usage(() => parseClusterUrl(text))
    yield* usage(() => checkRoot(root))
    const out = Option.isSome(flags.out) ? path.resolve(flags.out.value) : path.join(root, "experiments", def.name)
    if (path.relative(root, out).startsWith("..")) {
      return yield* new UsageError({ message: `--out ${out} is not under --root ${root}: runners could not see it` })
    }
    yield* reachable(url)
    const log = (line: string) => Effect.runSync(Console.log(`${new Date().toISOString()} ${line}`))
    return {
      out,
      executor: clusterExecutor({
        cluster: url,
        root,
        experiment: target,
        seeds: Option.getOrElse(flags.seeds, () => 0),
        set: Option.getOrElse(flags.set, () => ({})),
        folder: out,
        timing: DEFAULT_TIMING,
        log
      })
    }
  })
