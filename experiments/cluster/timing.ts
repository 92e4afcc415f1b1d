/**
 * The cluster's timing: how long a claim outlives its runner and how often participants look for
 * messages. A module of its own, without the cluster's dependencies, so the command line's flag
 * defaults do not load effect/cluster and the PostgreSQL client (~1 s) for commands that never use them.
 */

export interface Timing {
  /** Milliseconds a runner's claim on a run (and on its shards) outlives the runner: the fail-over delay. */
  readonly leaseMs: number
  /** Milliseconds between looks for new messages and replies, by runners and submitters. */
  readonly pollMs: number
}

/**
 * Production defaults: a 60 s lease outlasts any single engine call (onnxruntime holds the event
 * loop for a session run, up to seconds on large models; the lease is refreshed between calls).
 */
export const DEFAULT_TIMING: Timing = { leaseMs: 60_000, pollMs: 1_000 }
