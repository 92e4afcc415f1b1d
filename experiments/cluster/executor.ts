/**
 * The cluster executor: the submitting side of `etaflow experiment run --cluster`. Each run that is
 * not complete becomes a durable workflow execution (fire and forget: the submitter may leave and
 * the runs go on; submitting again joins the same executions), then the submitter follows the runs —
 * their folders on the shared root for progress, the workflows' results for the outcome — until all
 * are done, and the experiment writes its comparison as it does locally.
 */
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import { Cause, Effect, Layer, Option } from "effect"
import { ClusterWorkflowEngine } from "effect/cluster"
import type { Workflow } from "effect/workflow"
import * as path from "node:path"
import { UsageError } from "../../kernel/errors.ts"
import { readManifest } from "../../kernel/run-folder.ts"
import { packageVersions } from "../../kernel/versions.ts"
import { messageOf } from "../../schemas/message.ts"
import { scriptHash } from "../load.ts"
import { type Executor, type PlannedRun, runStatus } from "../run.ts"
import { clusterDatabase, type ClusterUrl } from "./database.ts"
import { ClusterRunError, ExperimentRun, type RunOutcome, type RunRequest, shardingConfig } from "./protocol.ts"
import type { Timing } from "./timing.ts"

export interface Submission {
  readonly cluster: ClusterUrl
  readonly root: string
  /** The experiment as the CLI was given it: a built-in name or a script path. */
  readonly experiment: string
  /** `--seeds` (0: the definition's). */
  readonly seeds: number
  readonly set: Readonly<Record<string, string>>
  /** The experiment folder: under the root. */
  readonly folder: string
  readonly timing: Timing
  readonly log: (line: string) => void
}

/** What the runners need to plan a run again; checked here, before anything is submitted. */
export const runRequest = (s: Submission, run: PlannedRun): RunRequest => {
  const folder = path.relative(s.root, s.folder)
  if (folder.startsWith("..") || path.isAbsolute(folder)) {
    throw new UsageError({ message: `--out ${s.folder} is not under --root ${s.root}: runners could not see it` })
  }
  const hash = scriptHash(s.experiment)
  const script = path.resolve(s.experiment)
  const underRoot = !path.relative(s.root, script).startsWith("..")
  return {
    version: packageVersions().etaflow,
    experiment: hash === "" ? s.experiment : underRoot ? path.relative(s.root, script) : script,
    scriptHash: hash,
    seeds: s.seeds,
    set: { ...s.set },
    folder,
    arm: run.arm,
    seed: run.seed,
    attempt: 0
  }
}

const causeMessage = (cause: Cause.Cause<unknown>) => messageOf(Cause.squash(cause))

/** The failure an execution ended with, if it has ended with one. */
const failureOf = (result: Option.Option<Workflow.Result<RunOutcome, ClusterRunError>>) =>
  Option.isSome(result) && result.value._tag === "Complete" && result.value.exit._tag === "Failure"
    ? Option.some(causeMessage(result.value.exit.cause))
    : Option.none()

/**
 * Submits a run (fire and forget) as its first attempt that has not failed: joining the execution in
 * flight or complete, or — where the last attempt failed before this submission — starting the next.
 */
const submitRun = (s: Submission, request: RunRequest) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const id = yield* ExperimentRun.execute({ ...request, attempt }, { discard: true })
      const failed = failureOf(yield* ExperimentRun.poll(id))
      if (Option.isNone(failed)) return id
      s.log(`${request.arm}/seed-${request.seed}: attempt ${attempt} failed earlier (${failed.value}); retrying`)
    }
    return yield* new ClusterRunError({
      arm: request.arm,
      seed: request.seed,
      runner: "none",
      reason: "failed",
      message: `${MAX_ATTEMPTS} attempts failed; not submitting another`
    })
  })

const MAX_ATTEMPTS = 100

/** A submitting client: no shards of its own, the same sharding settings as the runners. */
export const clientLayer = (cluster: ClusterUrl, timing: Timing) =>
  ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(
      NodeClusterSocket.layer({ storage: "sql", clientOnly: true, shardingConfig: shardingConfig(timing) })
    ),
    Layer.provide(clusterDatabase(cluster))
  )

/** What the submitter shows of a run: where its folder stands. */
const progressOf = (run: PlannedRun & { readonly out: string }) => {
  const status = runStatus(run.out)
  if (status === "missing") return "queued"
  const m = readManifest(run.out)
  return `${status}, ${m.iterations_complete}/${m.iterations} iterations`
}

type Followed = { readonly id: string; readonly run: PlannedRun & { readonly out: string } }

/**
 * One look at a run: its outcome once its workflow has one (undefined for success, else the error),
 * "pending" before; the folder's progress is logged when it changes.
 */
const look = (s: Submission, p: Followed, shown: Map<PlannedRun, string>, started: (run: PlannedRun) => void) =>
  Effect.gen(function*() {
    const name = `${p.run.arm}/seed-${p.run.seed}`
    const result = yield* ExperimentRun.poll(p.id)
    if (Option.isSome(result) && result.value._tag === "Complete") {
      const exit = result.value.exit
      if (exit._tag === "Success") {
        s.log(`${name}: complete (runner ${exit.value.runner}, ${exit.value.action})`)
        return undefined
      }
      s.log(`${name}: ${causeMessage(exit.cause)}`)
      const error = exit.cause.reasons.find((r) => r._tag === "Fail")?.error
      return error ?? new ClusterRunError({
        arm: p.run.arm,
        seed: p.run.seed,
        runner: "unknown",
        reason: "failed",
        message: causeMessage(exit.cause)
      })
    }
    const now = progressOf(p.run)
    if (shown.get(p.run) !== now) {
      if (now.startsWith("running") && !(shown.get(p.run) ?? "").startsWith("running")) started(p.run)
      shown.set(p.run, now)
      s.log(`${name}: ${now}`)
    }
    return "pending" as const
  })

/** Submits every run, then follows them until each workflow has its result. */
export const clusterExecutor = (s: Submission): Executor => ({
  name: "cluster",
  execute: (runs, _progress, started, finished) =>
    Effect.gen(function*() {
      if (runs.length === 0) return s.log("every run is complete: nothing to submit")
      const requests = yield* Effect.try({
        try: () => runs.map((r) => ({ run: r, request: runRequest(s, r) })),
        catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: String(e) }))
      })
      let pending: ReadonlyArray<Followed> = yield* Effect.forEach(requests, ({ request, run }) =>
        submitRun(s, request).pipe(Effect.map((id) => ({ id, run }))))
      s.log(`submitted ${pending.length} run(s) to the cluster at ${s.cluster.host}:${s.cluster.port}`)
      const shown = new Map<PlannedRun, string>()
      const failures: Array<ClusterRunError> = []
      while (pending.length > 0) {
        const still: Array<Followed> = []
        for (const p of pending) {
          const outcome = yield* look(s, p, shown, started)
          if (outcome === "pending") {
            still.push(p)
          } else {
            if (outcome !== undefined) {
              failures.push(outcome)
            }
            finished(p.run)
          }
        }
        pending = still
        if (pending.length > 0) {
          yield* Effect.sleep(`${s.timing.pollMs} millis`)
        }
      }
      if (failures.length > 0) {
        return yield* Effect.fail(failures[0])
      }
    }).pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() =>
          s.log("the submitter stops following; the runs go on (the same command follows them again)")
        )
      ),
      Effect.provide(clientLayer(s.cluster, s.timing)),
      Effect.withSpan("cluster.submit", { attributes: { runs: runs.length } })
    )
})
