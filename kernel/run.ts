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
import type * as arrow from "apache-arrow"
import { Cause, Console, Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { shapeOf } from "../schemas/columns.ts"
import { type Manifest, type MetricRow, RUN_FORMAT, type RunInfo } from "../schemas/manifest.ts"
import { type ConfigOf, formatIssues, resolveSettings } from "../schemas/settings.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { type CommitJob, tableBytes } from "../store/commit.ts"
import { type Committer, makeCommitter } from "./committer.ts"
import { asStoreError, NodeFailure, NonFiniteError, StoreError, UsageError } from "./errors.ts"
import type { AnyBound } from "./node.ts"
import type { AnyPipeline, PipelineError, PipelineRequirements } from "./pipeline.ts"
import { makeProgress, type Progress, type ProgressMode } from "./progress.ts"
import { planReplay, type ReplayPlan } from "./replay-plan.ts"
import {
  acquireLock,
  cleanUncommitted,
  iterFile,
  manifestText,
  metricsParquet,
  now,
  readManifest,
  readMetrics,
  timestamp
} from "./run-folder.ts"
import { NodeContext, Rng, RunStore } from "./services.ts"
import { packageVersions } from "./versions.ts"

export interface RunOptions {
  /** Settings from a config file (or a stored run), before `set`. */
  readonly config?: Readonly<Record<string, unknown>>
  /** `--set key=value` overrides, as strings. */
  readonly set?: Readonly<Record<string, string>>
  readonly seed?: number
  /** The run directory itself; default `runs/<pipeline>-<timestamp>`. */
  readonly out?: string
  /** Continue the run in this directory after its last complete iteration. */
  readonly resume?: string
  /**
   * Re-run a stored run from an entry onward: entries upstream of `from` are not recomputed, their
   * outputs are restored from the stored run (`.restoredBy`) and their metrics copied. The stored
   * config and seed are used, changed by `set`.
   */
  readonly replay?: { readonly source: string; readonly from: string }
  readonly progress?: ProgressMode
}

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

const describe = (e: unknown) => (e instanceof Error ? e.message : String(e))

const checkFinite = (where: string, metrics: Readonly<Record<string, number>>) => {
  for (const [name, value] of Object.entries(metrics)) {
    if (!Number.isFinite(value)) throw new NonFiniteError({ message: `${where}: metric "${name}" is ${value}` })
  }
}

const describeTable = (table: arrow.Table) => ({
  table: table.schema.metadata.get("etaflow.table") ?? "unknown",
  version: Number(table.schema.metadata.get("etaflow.table_version") ?? 0),
  shapes: Object.fromEntries(
    table.schema.fields.filter((f) => f.metadata.has("ARROW:extension:metadata")).map((
      f
    ) => [f.name, [...shapeOf(f, f.name)]])
  ),
  columns: table.schema.fields.map((f) => f.name)
})

interface Prepared<P extends AnyPipeline> {
  readonly dir: string
  readonly config: ConfigOf<P["settings"]>
  readonly seed: number
  readonly manifest: Manifest | undefined
}

const prepareResume = <P extends AnyPipeline>(pipeline: P, options: RunOptions & { resume: string }): Prepared<P> => {
  if (options.set !== undefined && Object.keys(options.set).length > 0 || options.config !== undefined) {
    throw new UsageError({ message: "--resume continues the stored config; --set and --config cannot change it" })
  }
  const manifest = readManifest(options.resume)
  if (manifest.pipeline !== pipeline.name) {
    throw new UsageError({
      message: `${options.resume} is a run of pipeline ${manifest.pipeline}, not ${pipeline.name}`
    })
  }
  const config = resolveSettings(pipeline.settings, manifest.config, {})
  if (Exit.isFailure(config)) {
    throw new UsageError({ message: `${options.resume}/manifest.json: stored config no longer valid` })
  }
  return { dir: options.resume, config: config.value as ConfigOf<P["settings"]>, seed: manifest.seed, manifest }
}

/** Resolves the run's config and folder; nothing is written when the settings are bad. */
export const prepareRun = <P extends AnyPipeline>(pipeline: P, options: RunOptions) =>
  Effect.try({
    try: (): Prepared<P> => {
      if (options.resume !== undefined) return prepareResume(pipeline, { ...options, resume: options.resume })
      const source = options.replay === undefined ? undefined : readManifest(options.replay.source)
      if (source !== undefined && source.pipeline !== pipeline.name) {
        throw new UsageError({
          message: `${options.replay!.source} is a run of pipeline ${source.pipeline}, not ${pipeline.name}`
        })
      }
      const resolved = resolveSettings(pipeline.settings, source?.config ?? options.config ?? {}, options.set ?? {})
      if (Exit.isFailure(resolved)) {
        const issues = Cause.findErrorOption(resolved.cause)
        throw new UsageError({ message: formatIssues(pipeline.name, issues._tag === "Some" ? issues.value : []) })
      }
      const seed = source?.seed ?? options.seed ?? 0
      if (!Number.isSafeInteger(seed) || seed < 0) {
        throw new UsageError({ message: `--seed must be a non-negative integer (given: ${seed})` })
      }
      const dir = options.out ??
        path.join("runs", `${pipeline.name}-${source === undefined ? "" : "replay-"}${timestamp()}`)
      if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
        throw new UsageError({
          message: `${dir} already exists and is not empty; choose another --out or continue it with --resume ${dir}`
        })
      }
      return { dir, config: resolved.value as ConfigOf<P["settings"]>, seed, manifest: undefined }
    },
    catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: describe(e) }))
  })

/** Creates or re-opens the run folder: its lock, and the manifest marked running. */
const openFolder = <P extends AnyPipeline>(
  pipeline: P,
  prep: Prepared<P>,
  options: RunOptions,
  replay: ReplayPlan | undefined
) => {
  const { dir, config, seed } = prep
  fs.mkdirSync(dir, { recursive: true })
  const release = acquireLock(dir)
  let manifest: Manifest
  if (prep.manifest !== undefined) {
    manifest = {
      ...prep.manifest,
      status: "running",
      updated_at: now(),
      resumed_at: [...(prep.manifest.resumed_at ?? []), now()]
    }
    cleanUncommitted(dir, manifest.iterations_complete, path.join(dir, "metrics.jsonl"))
  } else {
    manifest = {
      format: RUN_FORMAT,
      pipeline: pipeline.name,
      config: config as Record<string, unknown>,
      seed,
      versions: packageVersions(),
      created_at: now(),
      updated_at: now(),
      status: "running",
      iterations: pipeline.iterations(config),
      iterations_complete: 0,
      ...(replay === undefined
        ? {}
        : { replay_of: { source: replay.source, from: replay.from, overrides: { ...(options.set ?? {}) } } })
    }
  }
  writeFileAtomic(path.join(dir, "manifest.json"), manifestText(manifest))
  return { release, manifest }
}

/** The state entering the first iteration to run: the initial state, or the last checkpoint's. */
const loadState = <P extends AnyPipeline>(pipeline: P, dir: string, config: ConfigOf<P["settings"]>, start: number) => {
  const state = pipeline.state
  if (state === undefined) return Effect.succeed(undefined)
  if (start === 0) return state.initial(config) as Effect.Effect<unknown>
  const ckpt = path.join(dir, "checkpoints", iterFile(start - 1))
  return Effect.try({
    try: () =>
      state.decode(
        Object.fromEntries(fs.readdirSync(ckpt).map((f) => [f, new Uint8Array(fs.readFileSync(path.join(ckpt, f)))])),
        config
      ),
    catch: asStoreError(ckpt)
  })
}

/** What one iteration works with. */
interface RunContext {
  readonly pipeline: AnyPipeline
  readonly dir: string
  readonly config: Readonly<Record<string, unknown>>
  readonly seed: number
  readonly store: RunStore["Service"]
  readonly replay: ReplayPlan | undefined
  readonly progress: Progress
  /** Outputs of entries computed once per process (`.once()`): their inputs do not change. */
  readonly memo: Map<string, unknown>
}

type EntryResult = readonly [string, unknown, Readonly<Record<string, number>>]

/** The services a node call sees: which call it is, its random streams, the run folder. */
const callServices = (ctx: RunContext, entry: string, iteration: number) =>
  Layer.mergeAll(
    Layer.succeed(NodeContext, NodeContext.of({ pipeline: ctx.pipeline.name, entry, iteration, seed: ctx.seed })),
    Layer.succeed(Rng, Rng.forCall(ctx.seed, iteration, entry)),
    Layer.succeed(RunStore, ctx.store)
  )

/** Runs (or restores, or reuses) one entry of an iteration. */
const runEntry = (
  ctx: RunContext,
  entry: string,
  iteration: number,
  outputs: Record<string, unknown>
): Effect.Effect<EntryResult, unknown> => {
  const bound = ctx.pipeline.nodes[entry] as AnyBound
  if (bound.memoized === true && ctx.memo.has(entry)) return Effect.succeed([entry, ctx.memo.get(entry), {}])
  const replay = ctx.replay
  if (replay?.skipped.has(entry) === true) {
    const copied = replay.metricsOf(entry, iteration)
    if (!replay.restored.has(entry)) return Effect.succeed([entry, undefined, copied])
    return Effect.tryPromise({
      try: () => bound.restore!({ source: replay.source, iteration, outputs }),
      catch: (e) =>
        new NodeFailure({
          pipeline: ctx.pipeline.name,
          node: entry,
          iteration,
          message: `restoring from ${replay.source}: ${describe(e)}`,
          cause: e
        })
    }).pipe(Effect.map((out): EntryResult => [entry, out, copied]))
  }
  const input = Object.fromEntries(
    Object.entries(bound.wiring as Record<string, string>).map(([k, from]) => [k, outputs[from]])
  )
  const t0 = performance.now()
  return (bound.node.run(input) as Effect.Effect<unknown, unknown, NodeContext | Rng | RunStore>).pipe(
    Effect.provide(callServices(ctx, entry, iteration)),
    Effect.withSpan(`node.${entry}`, { attributes: { node: bound.node.name, iteration } }),
    Effect.map((out): EntryResult => {
      ctx.progress.nodeDone(entry, iteration, (performance.now() - t0) / 1000)
      let m: Readonly<Record<string, number>> = bound.node.metrics?.(out, input) ?? {}
      checkFinite(`pipeline ${ctx.pipeline.name}, iteration ${iteration}, node ${entry}`, m)
      if (bound.memoized === true) {
        ctx.memo.set(entry, out)
        // Logged with iteration 0 only, so a resumed run's metrics equal an uninterrupted run's.
        if (iteration > 0) m = {}
      }
      return [entry, out, m]
    })
  )
}

/** One iteration's DAG, level by level (members of a level run concurrently). */
const runIteration = (ctx: RunContext, iteration: number, state: unknown) =>
  Effect.gen(function*() {
    const outputs: Record<string, unknown> = { config: ctx.config, state, iteration }
    const metrics: Record<string, number> = {}
    const metricNode: Record<string, string> = {}
    for (const level of ctx.pipeline.levels as ReadonlyArray<ReadonlyArray<string>>) {
      const results = yield* Effect.forEach(level, (entry) => runEntry(ctx, entry, iteration, outputs), {
        concurrency: "unbounded"
      })
      for (const [entry, out, m] of results) {
        outputs[entry] = out
        for (const [k, v] of Object.entries(m)) {
          if (k in metrics) {
            return yield* new NodeFailure({
              pipeline: ctx.pipeline.name,
              node: entry,
              iteration,
              message: `metric "${k}" is logged by two entries`
            })
          }
          metrics[k] = v
          metricNode[k] = entry
        }
      }
    }
    return { outputs, metrics, metricNode }
  })

/** The next iteration's state, from the output of the entry that holds it. */
const nextState = (pipeline: AnyPipeline, outputs: Readonly<Record<string, unknown>>) => {
  const def = pipeline.state!
  const output = outputs[def.next]
  return def.select === undefined ? output : def.select(output)
}

type Info = {
  -readonly [K in keyof RunInfo]: RunInfo[K] extends Readonly<Record<string, infer V>> ? Record<string, V> : RunInfo[K]
}

interface Journal {
  manifest: Manifest
  readonly info: Info
  readonly allMetrics: Array<MetricRow>
}

/** The commit of an iteration as bytes for the commit worker; `written` collects what it will create. */
const commitJob = (
  ctx: RunContext,
  journal: Journal,
  iteration: number,
  outputs: Readonly<Record<string, unknown>>,
  iterationMetrics: { metrics: Readonly<Record<string, number>>; metricNode: Readonly<Record<string, string>> },
  written: Array<string>
): CommitJob => {
  const { pipeline, dir, store } = ctx
  const tables: Array<{ file: string; ipc: Uint8Array }> = []
  const files: Array<{ file: string; data: Uint8Array | string }> = []
  for (const [entry, bound] of Object.entries(pipeline.nodes as Record<string, AnyBound>)) {
    const spec = bound.persisted
    const output = outputs[entry] as arrow.Table | string | Uint8Array | undefined
    // An entry may have nothing to persist this time (e.g. no trajectories kept by a sweep).
    if (spec === undefined || output === undefined) continue
    const rel = spec.kind === "once" ? spec.file : path.join(spec.dir, `${iterFile(iteration)}.parquet`)
    written.push(path.join(dir, rel))
    if (typeof output === "string" || output instanceof Uint8Array) {
      files.push({ file: store.path(rel), data: output })
      continue
    }
    tables.push({ file: store.path(rel), ipc: tableBytes(output) })
    journal.info.outputs[entry] = { ...describeTable(output), file: spec.kind === "once" ? rel : spec.dir }
  }
  const dirs: Array<{ dir: string; files: Record<string, Uint8Array | string> }> = []
  if (pipeline.state !== undefined) {
    const ckpt = path.join(dir, "checkpoints", iterFile(iteration))
    written.push(ckpt)
    const rng = JSON.stringify({ seed: ctx.seed, next_iteration: iteration + 1 })
    dirs.push({ dir: ckpt, files: { ...pipeline.state.encode(nextState(pipeline, outputs)), "rng.json": rng } })
  }
  const rows: Array<MetricRow> = Object.entries(iterationMetrics.metrics)
    .map(([name, value]) => ({ iteration, name, value, node: iterationMetrics.metricNode[name] }))
  journal.allMetrics.push(...rows)
  files.push({ file: path.join(dir, "meta/info.json"), data: JSON.stringify(journal.info, null, 2) + "\n" })
  files.push({ file: store.path("metrics.parquet"), data: metricsParquet(journal.allMetrics) })
  journal.manifest = { ...journal.manifest, iterations_complete: iteration + 1, updated_at: now() }
  const append = { file: path.join(dir, "metrics.jsonl"), text: rows.map((r) => JSON.stringify(r) + "\n").join("") }
  return {
    tables,
    dirs,
    files,
    append,
    commitPoint: { file: path.join(dir, "manifest.json"), data: manifestText(journal.manifest) }
  }
}

/** After a failed iteration: the commit in flight lands (or fails) first, then the failure is recorded. */
const recordFailure = (
  ctx: RunContext,
  journal: Journal,
  committer: Committer,
  written: ReadonlyArray<string>,
  cause: Cause.Cause<unknown>
) =>
  Effect.gen(function*() {
    const landed = yield* Effect.exit(committer.await)
    committer.remove(written)
    cleanUncommitted(ctx.dir, committer.committed(), path.join(ctx.dir, "metrics.jsonl"))
    const failure = Exit.isFailure(landed) ? landed.cause : cause
    const error = Cause.squash(failure)
    journal.manifest = {
      ...journal.manifest,
      iterations_complete: committer.committed(),
      status: "failed",
      updated_at: now(),
      error: describe(error)
    }
    writeFileAtomic(path.join(ctx.dir, "manifest.json"), manifestText(journal.manifest))
    ctx.progress.finish()
    return yield* Effect.failCause(failure)
  })

const readInfo = (pipeline: AnyPipeline, dir: string, config: Readonly<Record<string, unknown>>): Info => {
  const file = path.join(dir, "meta/info.json")
  return fs.existsSync(file)
    ? JSON.parse(fs.readFileSync(file, "utf8"))
    : { schema_version: 1, pipeline: pipeline.name, outputs: {}, details: pipeline.info(config) }
}

/** Runs (or resumes) a pipeline to completion in its run folder. */
export const runPipeline = <P extends AnyPipeline>(pipeline: P, options: RunOptions = {}): Effect.Effect<
  RunResult<P>,
  RunError<P>,
  PipelineRequirements<P>
> =>
  Effect.gen(function*() {
    const prep = yield* prepareRun(pipeline, options)
    const { dir, config, seed } = prep
    const total = pipeline.iterations(config)
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
    const journal: Journal = {
      manifest: opened.manifest,
      info: readInfo(pipeline, dir, config),
      allMetrics: readMetrics(path.join(dir, "metrics.jsonl"))
    }
    const committer = makeCommitter(dir, journal.manifest.iterations_complete)
    // Runs before the lock is released (finalizers run last-added first): nothing writes after that.
    yield* Effect.addFinalizer(() => Effect.ignore(committer.await))
    const start = journal.manifest.iterations_complete
    let state = yield* loadState(pipeline, dir, config, start).pipe(
      Effect.mapError((e) =>
        new NodeFailure({ pipeline: pipeline.name, node: "state", iteration: start, message: describe(e), cause: e })
      )
    )
    const progress = makeProgress(options.progress ?? "auto", pipeline.name, total, start)
    const ctx: RunContext = {
      pipeline,
      dir,
      config,
      seed,
      store: RunStore.make(dir),
      replay,
      progress,
      memo: new Map()
    }
    let outputs: Readonly<Record<string, unknown>> = {}
    for (let iteration = start; iteration < total; iteration++) {
      const written: Array<string> = []
      yield* Effect.gen(function*() {
        const result = yield* runIteration(ctx, iteration, state)
        outputs = result.outputs
        const job = yield* Effect.try({
          try: () => commitJob(ctx, journal, iteration, result.outputs, result, written),
          catch: asStoreError(dir)
        })
        yield* committer.await
        if (pipeline.state !== undefined) state = nextState(pipeline, result.outputs)
        committer.submit(iteration, job, written, () => progress.iterationDone(iteration, result.metrics))
      }).pipe(Effect.catchCause((cause) => recordFailure(ctx, journal, committer, written, cause)))
    }
    yield* committer.await
    progress.finish()
    journal.manifest = { ...journal.manifest, status: "complete", updated_at: now() }
    const manifestFile = path.join(dir, "manifest.json")
    yield* Effect.try({
      try: () => writeFileAtomic(manifestFile, manifestText(journal.manifest)),
      catch: asStoreError(manifestFile)
    })
    if (pipeline.onComplete !== undefined) {
      yield* Effect.try({ try: () => pipeline.onComplete!(dir), catch: asStoreError(dir) })
    }
    return {
      dir,
      config,
      iterationsComplete: journal.manifest.iterations_complete,
      outputs,
      metrics: journal.allMetrics
    }
  }).pipe(Effect.scoped, Effect.withSpan("pipeline.run", { attributes: { pipeline: pipeline.name } })) as never
