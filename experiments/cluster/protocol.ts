/**
 * What a submitter and the runners of an etaflow cluster agree on: one durable **workflow per run**
 * (`ExperimentRun`, its execution id derived from the run's identity, so submitting a run twice joins
 * the first submission), which hands the run to a **durable queue** (`RUN_QUEUE`) that every runner's
 * workers take from. The queue is what spreads runs over runners by load — a runner takes a run
 * only when it has a free slot — and its row lease in PostgreSQL is what tells a live runner from a
 * dead one: when a runner dies, its lease lapses and another runner takes the run and resumes it from
 * its last committed iteration. Sharding settings every participant must share are fixed here.
 */
import { Option, Schema } from "effect"
import { RunnerAddress } from "effect/cluster"
import { DurableQueue, Workflow } from "effect/workflow"
import type { Timing } from "./timing.ts"

/** One run of an experiment, as the submitter planned it: enough for a runner to plan it again. */
export const RunRequest = Schema.Struct({
  /** The submitter's etaflow version; a runner of another version refuses the run. */
  version: Schema.String,
  /** A built-in experiment's name, or its script: relative to the root when it lies under it. */
  experiment: Schema.String,
  /** sha256 of the script as submitted ("" for a built-in): a runner refuses a script changed since. */
  scriptHash: Schema.String,
  /** `--seeds` of the submission (0: the definition's own seeds). */
  seeds: Schema.Int,
  /** `--set` of the submission. */
  set: Schema.Record(Schema.String, Schema.String),
  /** The experiment folder, relative to the root (every runner mounts the root where it likes). */
  folder: Schema.String,
  arm: Schema.String,
  seed: Schema.Int,
  /**
   * 0, or 1 + the attempt a submitter found failed: a failed execution keeps its result, so a run is
   * retried (after the user fixed the cause) as the next attempt; submitters that find the same failed
   * attempt agree on the next one, so even retries start once.
   */
  attempt: Schema.Int
})
export type RunRequest = typeof RunRequest.Type

/** What a runner reports when a run is complete. */
export const RunOutcome = Schema.Struct({
  /** The runner that finished it (host:port). */
  runner: Schema.String,
  iterations: Schema.Int,
  /** What the runner did: started it, resumed it, or found it complete. */
  action: Schema.Literals(["started", "resumed", "already complete"])
})
export type RunOutcome = typeof RunOutcome.Type

/** Why a run did not complete on the runner that took it. */
export class ClusterRunError extends Schema.TaggedError<ClusterRunError>()("ClusterRunError", {
  arm: Schema.String,
  seed: Schema.Int,
  runner: Schema.String,
  reason: Schema.Literals(["version", "script", "usage", "failed"]),
  message: Schema.String
}) {}

/** A run's identity: the same run submitted again (while in flight or after) is the same execution. */
export const runIdentity = (r: Pick<RunRequest, "version" | "folder" | "arm" | "seed" | "attempt">) =>
  `etaflow@${r.version}:${r.folder}/runs/${r.arm}/seed-${r.seed}#${r.attempt}`

export const ExperimentRun = Workflow.make("etaflow/ExperimentRun", {
  payload: RunRequest,
  success: RunOutcome,
  error: ClusterRunError,
  idempotencyKey: runIdentity
})

export const RUN_QUEUE = DurableQueue.make({
  name: "etaflow/runs",
  payload: RunRequest,
  success: RunOutcome,
  error: ClusterRunError,
  idempotencyKey: runIdentity
})

/** Shards per group: every participant must use the same number, or messages wait on shards no one owns. */
export const SHARDS_PER_GROUP = 64

const ms = (n: number) => `${Math.max(1, Math.round(n))} millis` as const

/** The sharding settings of a runner (its address given) or of a submitting client. */
export const shardingConfig = (timing: Timing, address?: { readonly host: string; readonly port: number }) => ({
  shardsPerGroup: SHARDS_PER_GROUP,
  shardLockExpiration: ms(timing.leaseMs),
  shardLockRefreshInterval: ms(timing.leaseMs / 4),
  runnerHealthCheckInterval: ms(timing.pollMs),
  entityMessagePollInterval: ms(timing.pollMs),
  entityReplyPollInterval: ms(timing.pollMs),
  refreshAssignmentsInterval: ms(timing.pollMs),
  ...(address === undefined ? {} : { runnerAddress: Option.some(RunnerAddress.make(address.host, address.port)) })
})
