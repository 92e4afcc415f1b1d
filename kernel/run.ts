/**
 * The kernel's runner: resolves the config, opens or resumes the run folder, runs the DAG once per
 * iteration in topological levels, persists chosen outputs, checkpoints the iteration state and
 * commits each iteration atomically.
 *
 * Commit protocol of iteration i (crash-safe at every point):
 *  1. persisted outputs → their Parquet files (each written atomically);
 *  2. state → `checkpoints/iter-i/` (a folder renamed into place);
 *  3. metrics → appended to `metrics.jsonl`, `metrics.parquet` rewritten;
 *  4. `manifest.json` rewritten with `iterations_complete = i + 1`: the commit point.
 * A failure undoes 1–3 for that iteration; a kill leaves files that resume removes, since the
 * manifest does not count them. The commit is written by a worker thread (store/commit.ts) while the
 * next iteration computes; at most one is in flight, and it lands (or fails the run) before the
 * next is submitted, before a failure is recorded and before the run ends (kernel/committer.ts).
 *
 * ```ts
 * const result = yield* runPipeline(myPipeline, { set: { iterations: "5" }, out: "runs/mine" })
 * ```
 */
import { Console, Effect, Semaphore } from "effect"
import * as path from "node:path"
import type { MetricRow } from "../schemas/manifest.ts"
import { messageOf } from "../schemas/message.ts"
import type { ConfigOf } from "../schemas/settings.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { type StoredFiles, storedFiles } from "../store/integrity.ts"
import { commitJob } from "./commit-job.ts"
import { type Committer, makeCommitter } from "./committer.ts"
import { asStoreError, NodeFailure, NonFiniteError, StoreError, UsageError } from "./errors.ts"
import { type Journal, nextState, readInfo, readTimings, type RunContext, runIteration } from "./iteration.ts"
import type { AnyPipeline, PipelineError, PipelineRequirements } from "./pipeline.ts"
import { makeProgress } from "./progress.ts"
import { planReplay } from "./replay-plan.ts"
import { manifestText, now, readMetrics } from "./run-folder.ts"
import { noteStop, recordFailure, recordInterrupt, warnVersionChanges } from "./run-records.ts"
import { loadState, openFolder, prepareRun, type RunOptions } from "./run-setup.ts"
import { RunStore } from "./services.ts"
import { stopReason } from "./watch.ts"

export { prepareRun, type RunOptions }

const describe = (e: unknown) => messageOf(e)

export interface RunResult<P extends AnyPipeline> {
  readonly dir: string
  readonly config: ConfigOf<P["settings"]>
  readonly iterationsComplete: number
  /** Outputs of the last iteration run in this process (empty when nothing was left to run). */
  readonly outputs: Readonly<Record<string, unknown>>
  readonly metrics: ReadonlyArray<MetricRow>
}

/** The failures of running a pipeline: the kernel's and its nodes'. */
export type RunError<P extends AnyPipeline> = UsageError | NodeFailure | NonFiniteError | StoreError | PipelineError<P>

/** The stored run's state entering each iteration, decoded once per iteration (for regeneration in a replay). */
const sourceStates = <P extends AnyPipeline>(
  pipeline: P,
  source: StoredFiles | undefined,
  config: ConfigOf<P["settings"]>
) => {
  const cache = new Map<number, unknown>()
  return (iteration: number): Effect.Effect<unknown, unknown> => {
    if (source === undefined) return Effect.die(new Error("only a replay regenerates outputs from a stored run"))
    if (cache.has(iteration)) return Effect.succeed(cache.get(iteration))
    return loadState(pipeline, source, config, iteration).pipe(
      Effect.tap((s) => Effect.sync(() => cache.set(iteration, s)))
    )
  }
}

/**
 * The run folder opened (locked, manifest marked running, the commit worker started; both undone by the
 * scope's finalizers), the metrics and timings so far, and the state entering the first iteration to run.
 */
const openRun = <P extends AnyPipeline>(pipeline: P, options: RunOptions) =>
  Effect.gen(function*() {
    const prep = yield* prepareRun(pipeline, options)
    const { dir, config } = prep
    const replay = yield* Effect.try({
      try: () => (options.replay === undefined ? undefined : planReplay(pipeline, options.replay)),
      catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: describe(e) }))
    })
    if (replay?.deprecated !== undefined) {
      yield* Console.error(
        `etaflow: replay --from ${replay.deprecated} is deprecated; the stage is now called "${replay.from}"`
      )
    }
    const opened = yield* Effect.try({
      try: () => openFolder(pipeline, prep, options, replay),
      catch: asStoreError(path.join(dir, "manifest.json"))
    })
    yield* Effect.addFinalizer(() => Effect.sync(opened.release))
    yield* warnVersionChanges(dir, opened.changed, replay?.source)
    const journal: Journal = {
      manifest: opened.manifest,
      info: readInfo(pipeline, dir, config),
      allMetrics: readMetrics(path.join(dir, "metrics.jsonl")),
      timings: readTimings(dir, opened.manifest.iterations_complete)
    }
    const committer = makeCommitter(dir, journal.manifest.iterations_complete)
    // Runs before the lock is released (finalizers run last-added first): nothing writes after that.
    yield* Effect.addFinalizer(() => Effect.ignore(committer.await))
    const state = yield* startingState(pipeline, dir, journal, config)
    return { prep, replay, journal, committer, state }
  })

/** The state entering the first iteration to run; a checkpoint that cannot be read marks the folder failed. */
const startingState = <P extends AnyPipeline>(
  pipeline: P,
  dir: string,
  journal: Journal,
  config: ConfigOf<P["settings"]>
) =>
  Effect.gen(function*() {
    const start = journal.manifest.iterations_complete
    const files = yield* Effect.try({ try: () => storedFiles(dir, start), catch: asStoreError(dir) })
    if (start > 0 && files.legacy) {
      yield* Console.error(
        `etaflow: notice: ${dir} records no file hashes (written before etaflow recorded them); ` +
          "its checkpoint is not verified"
      )
    }
    return yield* loadState(pipeline, files, config, start).pipe(
      Effect.mapError((e) =>
        new NodeFailure({ pipeline: pipeline.name, node: "state", iteration: start, message: describe(e), cause: e })
      ),
      // The folder says why it did not go on (a damaged checkpoint), instead of "running" with no one running it.
      Effect.tapError((e) =>
        Effect.sync(() => {
          journal.manifest = { ...journal.manifest, status: "failed", updated_at: now(), error: e.message }
          writeFileAtomic(path.join(dir, "manifest.json"), manifestText(journal.manifest))
        })
      )
    )
  })

/**
 * Iterations from the journal's commit point to `total`, each committed through the committer, until the
 * pipeline's `stopWhen` rules hold; returns the last outputs and why the rules stopped the run, if they did.
 */
const iterateRun = (ctx: RunContext, journal: Journal, committer: Committer, initial: unknown, total: number) => {
  const { pipeline } = ctx
  let state = initial
  let outputs: Readonly<Record<string, unknown>> = {}
  // What the iteration in progress has written, for an interrupt to remove.
  let inProgress: Array<string> = []
  const rules = pipeline.stopRules(ctx.config)
  let stopped = journal.manifest.stopped
  const loop = Effect.gen(function*() {
    for (
      let iteration = journal.manifest.iterations_complete;
      iteration < total && stopped === undefined;
      iteration++
    ) {
      const written: Array<string> = []
      inProgress = written
      yield* Effect.gen(function*() {
        const result = yield* runIteration(ctx, iteration, state)
        outputs = result.outputs
        const job = yield* Effect.try({
          try: () => commitJob(ctx, journal, iteration, result.outputs, result, written),
          catch: asStoreError(ctx.dir)
        })
        yield* committer.await
        if (pipeline.state !== undefined) state = nextState(pipeline, result.outputs)
        committer.submit(iteration, job, written, () => ctx.progress.iterationDone(iteration, result.metrics))
        // The job's files are the committer's from here: a failed commit removes them itself, a landed one
        // must stay. An interrupt during the last commit's wait removed them and lost the final checkpoint.
        inProgress = []
        const reason = stopReason(rules, journal.allMetrics)
        if (reason !== undefined) stopped = { iteration, reason }
      }).pipe(Effect.catchCause((cause) => recordFailure(ctx, journal, committer, written, cause)))
    }
    yield* committer.await
    return { outputs, stopped, rules }
  })
  return loop.pipe(Effect.onInterrupt(() => recordInterrupt(ctx, journal, committer, inProgress)))
}

/** Runs (or resumes) a pipeline to completion in its run folder. */
export const runPipeline = <P extends AnyPipeline>(pipeline: P, options: RunOptions = {}): Effect.Effect<
  RunResult<P>,
  RunError<P>,
  PipelineRequirements<P>
> =>
  Effect.gen(function*() {
    const { prep, replay, journal, committer, state } = yield* openRun(pipeline, options)
    const { dir, config, seed } = prep
    const total = pipeline.iterations(config)
    const progress = makeProgress(
      options.progress ?? "auto",
      pipeline.name,
      total,
      journal.manifest.iterations_complete
    )
    const ctx: RunContext = {
      pipeline,
      dir,
      config,
      seed,
      store: RunStore.make(dir),
      storeLayer: RunStore.layer(dir),
      replay,
      progress,
      memo: new Map(),
      sourceState: sourceStates(pipeline, replay?.files, config),
      retention: pipeline.retention(config),
      cores: Semaphore.makeUnsafe(1)
    }
    // A run its rules stopped is complete: a resume says so and runs nothing.
    const before = journal.manifest.stopped
    if (before !== undefined) {
      yield* Console.error(
        `etaflow: ${dir} is complete: stopWhen stopped it after iteration ${before.iteration} (${before.reason})`
      )
    }
    const { outputs, stopped, rules } = yield* iterateRun(ctx, journal, committer, state, total)
    progress.finish()
    yield* noteStop(rules, journal, stopped)
    journal.manifest = { ...journal.manifest, status: "complete", updated_at: now(), ...(stopped ? { stopped } : {}) }
    const manifestFile = path.join(dir, "manifest.json")
    yield* Effect.try({
      try: () => writeFileAtomic(manifestFile, manifestText(journal.manifest)),
      catch: asStoreError(manifestFile)
    })
    if (pipeline.onComplete !== undefined) {
      yield* Effect.try({ try: () => pipeline.onComplete!(dir, config, progress.note), catch: asStoreError(dir) })
    }
    return {
      dir,
      config,
      iterationsComplete: journal.manifest.iterations_complete,
      outputs,
      metrics: journal.allMetrics
    }
  }).pipe(Effect.scoped, Effect.withSpan("pipeline.run", { attributes: { pipeline: pipeline.name } })) as never
