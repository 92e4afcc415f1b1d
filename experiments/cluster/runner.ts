/**
 * `etaflow runner`: a cluster runner. It hosts the run workflow's entity and takes runs from the
 * durable queue (`runs` at a time); each run is planned again from the submitted experiment exactly
 * as the submitter planned it, then started, resumed from its last committed iteration (after another
 * runner died holding it), or found complete — the ordinary run folder on the shared root is the only
 * state, so a run's numbers do not depend on which runners carried it.
 */
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import { Effect, Layer } from "effect"
import { ClusterWorkflowEngine } from "effect/cluster"
import { PersistedQueue } from "effect/persistence"
import { DurableQueue } from "effect/workflow"
import * as fs from "node:fs"
import * as path from "node:path"
import { UsageError } from "../../kernel/errors.ts"
import { packageVersions } from "../../kernel/versions.ts"
import { messageOf } from "../../schemas/message.ts"
import { loadExperiment, scriptHash } from "../load.ts"
import { carryOut, planExperiment, runStatus } from "../run.ts"
import { clusterDatabase, type ClusterUrl } from "./database.ts"
import {
  ClusterRunError,
  ExperimentRun,
  RUN_QUEUE,
  type RunOutcome,
  type RunRequest,
  shardingConfig
} from "./protocol.ts"
import type { Timing } from "./timing.ts"

export interface RunnerOptions {
  readonly cluster: ClusterUrl
  /** The shared root holding every experiment folder (the same folder on every runner and submitter). */
  readonly root: string
  /** Where other runners and submitters reach this runner. */
  readonly address: { readonly host: string; readonly port: number }
  /** Runs carried at once. */
  readonly runs: number
  /** onnxruntime threads of the runs this runner starts (resumed runs keep their stored setting). */
  readonly threads?: number
  readonly timing: Timing
  readonly log: (line: string) => void
}

/** The root must be a folder this process can write: checked before the runner joins the cluster. */
export const checkRoot = (root: string): void => {
  const hint = "(every runner and the submitter need the same shared folder, e.g. an NFS mount)"
  if (!fs.existsSync(root)) throw new UsageError({ message: `--root ${root} does not exist ${hint}` })
  if (!fs.statSync(root).isDirectory()) throw new UsageError({ message: `--root ${root} is not a folder ${hint}` })
  try {
    fs.accessSync(root, fs.constants.W_OK)
    const probe = path.join(root, `.etaflow-probe-${process.pid}`)
    fs.writeFileSync(probe, "")
    fs.rmSync(probe)
  } catch (e) {
    throw new UsageError({
      message: `--root ${root} is not writable by this process (${messageOf(e)}) ${hint}`
    })
  }
}

const label = (r: RunRequest) => `${r.folder}/runs/${r.arm}/seed-${r.seed}`

/** Loads the submitted experiment as the submitter saw it and plans the requested run. */
const plannedRun = (options: RunnerOptions, request: RunRequest, runner: string) =>
  Effect.tryPromise({
    try: async () => {
      const target = request.scriptHash === "" || path.isAbsolute(request.experiment)
        ? request.experiment
        : path.join(options.root, request.experiment)
      if (request.scriptHash !== "" && fs.existsSync(target) && scriptHash(target) !== request.scriptHash) {
        throw new ClusterRunError({
          arm: request.arm,
          seed: request.seed,
          runner,
          reason: "script",
          message: `${target} changed since the experiment was submitted; submit it again`
        })
      }
      const def = await loadExperiment(target, request.scriptHash)
      const out = path.join(options.root, request.folder)
      const plan = planExperiment(def, {
        out,
        ...(request.seeds > 0 ? { seeds: request.seeds } : {}),
        set: request.set
      })
      const run = plan.runs.find((r) => r.arm === request.arm && r.seed === request.seed)
      if (run === undefined) {
        throw new UsageError({ message: `experiment ${def.name} has no run ${request.arm}/seed-${request.seed}` })
      }
      return { ...run, out: path.join(out, run.dir) }
    },
    catch: (e) =>
      e instanceof ClusterRunError ? e : new ClusterRunError({
        arm: request.arm,
        seed: request.seed,
        runner,
        reason: "usage",
        message: messageOf(e)
      })
  })

/** Carries out one run taken from the queue. */
export const executeRun =
  (options: RunnerOptions) => (request: RunRequest): Effect.Effect<RunOutcome, ClusterRunError> => {
    const runner = `${options.address.host}:${options.address.port}`
    const refuse = (reason: ClusterRunError["reason"], message: string) =>
      new ClusterRunError({ arm: request.arm, seed: request.seed, runner, reason, message })
    return Effect.gen(function*(): Effect.fn.Return<RunOutcome, ClusterRunError> {
      const version = packageVersions().etaflow
      if (request.version !== version) {
        return yield* refuse(
          "version",
          `runner ${runner} runs etaflow ${version}; the run was submitted with etaflow ${request.version} ` +
            "(results depend on the version: run the runners and the submitter at one version)"
        )
      }
      const run = yield* plannedRun(options, request, runner)
      const status = runStatus(run.out)
      if (status === "complete") {
        options.log(`${label(request)}: already complete`)
        return { runner, iterations: 0, action: "already complete" as const }
      }
      const started = Date.now()
      const lock = { leased: true, owner: `runner ${runner}` }
      const threads = options.threads !== undefined && "threads" in run.pipeline.settings
        ? { threads: String(options.threads) }
        : {}
      options.log(`${label(request)}: ${status === "missing" ? "starting" : `resuming (${status})`}`)
      const result = yield* carryOut({ ...run, resume: status !== "missing" }, { progress: "none", set: threads, lock })
        .pipe(Effect.mapError((e) => refuse(e._tag === "UsageError" ? "usage" : "failed", e.message)))
      options.log(
        `${label(request)}: complete (${result.iterationsComplete} iterations, ${
          ((Date.now() - started) / 1000).toFixed(1)
        } s here)`
      )
      return { runner, iterations: result.iterationsComplete, action: status === "missing" ? "started" : "resumed" }
    }).pipe(
      Effect.tapError((e) => Effect.sync(() => options.log(`${label(request)}: refused or failed: ${e.message}`))),
      Effect.withSpan("cluster.run", { attributes: { run: label(request), runner } })
    )
  }

/** The queue's lease on a run: refreshed four times per lease, so one missed refresh costs nothing. */
export const queueStore = (timing: Timing) =>
  PersistedQueue.layerStoreSql({
    tableName: "etaflow_run_queue",
    lockExpiration: `${timing.leaseMs} millis`,
    lockRefreshInterval: `${Math.max(1, Math.round(timing.leaseMs / 4))} millis`,
    pollInterval: `${timing.pollMs} millis`
  })

/** A runner: the run workflow's entity and `runs` queue workers, over the cluster's database. */
export const runnerLayer = (options: RunnerOptions) => {
  const workflow = ExperimentRun.toLayer((request) => DurableQueue.process(RUN_QUEUE, request))
  const worker = DurableQueue.worker(RUN_QUEUE, executeRun(options), { concurrency: options.runs })
  const cluster = ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(
      NodeClusterSocket.layer({ storage: "sql", shardingConfig: shardingConfig(options.timing, options.address) })
    )
  )
  const queues = PersistedQueue.layer.pipe(Layer.provide(queueStore(options.timing)))
  return Layer.mergeAll(workflow, worker).pipe(
    Layer.provide(Layer.mergeAll(cluster, queues)),
    Layer.provide(clusterDatabase(options.cluster))
  )
}
