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
 * next is submitted, before a failure is recorded and before the run ends.
 */
import { Cause, Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { RUN_FORMAT, type Manifest, type MetricRow, type RunInfo } from "../schemas/manifest.ts"
import { formatIssues, resolveSettings, type ConfigOf } from "../schemas/settings.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { NodeFailure, NonFiniteError, StoreError, UsageError } from "./errors.ts"
import type { AnyPipeline, PipelineError, PipelineRequirements } from "./pipeline.ts"
import { NodeContext, Rng, RunStore } from "./services.ts"
import { makeProgress, type ProgressMode } from "./progress.ts"
import { packageVersions } from "./versions.ts"
import type * as arrow from "apache-arrow"
import { shapeOf } from "../schemas/columns.ts"
import { commitInBackground, tableBytes, type CommitJob } from "../store/commit.ts"
import { acquireLock, cleanUncommitted, iterFile, manifestText, metricsParquet, now, readManifest, readMetrics, timestamp } from "./run-folder.ts"
import { writeReport } from "../report/report.ts"

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

const checkFinite = (where: string, metrics: Readonly<Record<string, number>>) => {
  for (const [name, value] of Object.entries(metrics)) {
    if (!Number.isFinite(value)) throw new NonFiniteError({ message: `${where}: metric "${name}" is ${value}` })
  }
}

const describeTable = (table: arrow.Table) => ({
  table: table.schema.metadata.get("etaflow.table") ?? "unknown",
  version: Number(table.schema.metadata.get("etaflow.table_version") ?? 0),
  shapes: Object.fromEntries(
    table.schema.fields.filter((f) => f.metadata.has("ARROW:extension:metadata")).map((f) => [f.name, [...shapeOf(f, f.name)]])
  ),
  columns: table.schema.fields.map((f) => f.name)
})

const asStoreError = (file: string) => (e: unknown) =>
  e instanceof UsageError || e instanceof NonFiniteError || e instanceof NodeFailure ? e
    : new StoreError({ file, message: e instanceof Error ? e.message : String(e) })

/** Stage names of the design (docs/design.md) that `--from` accepts besides entry names. */
const STAGE_ALIASES: Readonly<Record<string, string>> = { score: "rewards", normalize: "advantages", evaluate: "evaluation" }

/**
 * What a replay from `from` skips (the entries upstream of it, except those computed once), which
 * of those it must restore (their outputs feed entries that run), and the stored metrics it copies.
 */
const planReplay = (pipeline: AnyPipeline, replay: RunOptions["replay"]) => {
  if (replay === undefined) return undefined
  const nodes = pipeline.nodes as Record<string, { wiring: Record<string, string>; memoized?: true; restore?: unknown }>
  const from = nodes[replay.from] !== undefined ? replay.from : STAGE_ALIASES[replay.from]
  if (from === undefined || nodes[from] === undefined) {
    throw new UsageError({ message: `replay: pipeline ${pipeline.name} has no entry "${replay.from}" (entries: ${Object.keys(nodes).join(", ")})` })
  }
  // Upstream entries of `from` (entries computed once are reused as they are).
  const upstream = new Set<string>()
  const visit = (entry: string) => {
    for (const dep of Object.values(nodes[entry].wiring)) {
      if (nodes[dep] !== undefined && nodes[dep].memoized !== true && !upstream.has(dep)) {
        upstream.add(dep)
        visit(dep)
      }
    }
  }
  visit(from)
  // Skipped: the upstream entries that can be restored, and those only skipped entries read;
  // the rest (config adapters and the like) are recomputed, which is exact.
  const consumers = (entry: string) => Object.keys(nodes).filter((e) => Object.values(nodes[e].wiring).includes(entry))
  const skipped = new Set([...upstream].filter((e) => nodes[e].restore !== undefined))
  for (let changed = true; changed;) {
    changed = false
    for (const e of upstream) {
      if (!skipped.has(e) && consumers(e).every((c) => skipped.has(c))) {
        skipped.add(e)
        changed = true
      }
    }
  }
  const restored = new Set<string>()
  for (const [entry, bound] of Object.entries(nodes)) {
    if (skipped.has(entry)) continue
    for (const dep of Object.values(bound.wiring)) if (skipped.has(dep)) restored.add(dep)
  }
  for (const entry of restored) {
    if (nodes[entry].restore === undefined) {
      throw new UsageError({ message: `replay: pipeline ${pipeline.name} cannot start at "${from}": the output of "${entry}" cannot be restored from a stored run` })
    }
  }
  const rows = readMetrics(path.join(replay.source, "metrics.jsonl"))
  return {
    from,
    source: replay.source,
    skipped,
    restored,
    metricsOf: (entry: string, iteration: number): Readonly<Record<string, number>> =>
      Object.fromEntries(rows.filter((r) => r.node === entry && r.iteration === iteration).map((r) => [r.name, r.value]))
  }
}

/** Resolves the run's config and folder; nothing is written when the settings are bad. */
export const prepareRun = <P extends AnyPipeline>(pipeline: P, options: RunOptions) =>
  Effect.try({
    try: () => {
      if (options.resume !== undefined) {
        if (options.set !== undefined && Object.keys(options.set).length > 0 || options.config !== undefined) {
          throw new UsageError({ message: "--resume continues the stored config; --set and --config cannot change it" })
        }
        const manifest = readManifest(options.resume)
        if (manifest.pipeline !== pipeline.name) {
          throw new UsageError({ message: `${options.resume} is a run of pipeline ${manifest.pipeline}, not ${pipeline.name}` })
        }
        const config = resolveSettings(pipeline.settings, manifest.config, {})
        if (Exit.isFailure(config)) throw new UsageError({ message: `${options.resume}/manifest.json: stored config no longer valid` })
        return { dir: options.resume, config: config.value as ConfigOf<P["settings"]>, seed: manifest.seed, manifest }
      }
      const source = options.replay === undefined ? undefined : readManifest(options.replay.source)
      if (source !== undefined && source.pipeline !== pipeline.name) {
        throw new UsageError({ message: `${options.replay!.source} is a run of pipeline ${source.pipeline}, not ${pipeline.name}` })
      }
      const resolved = resolveSettings(pipeline.settings, source?.config ?? options.config ?? {}, options.set ?? {})
      if (Exit.isFailure(resolved)) {
        const issues = Cause.findErrorOption(resolved.cause)
        throw new UsageError({ message: formatIssues(pipeline.name, issues._tag === "Some" ? issues.value : []) })
      }
      const seed = source?.seed ?? options.seed ?? 0
      if (!Number.isSafeInteger(seed) || seed < 0) throw new UsageError({ message: `--seed must be a non-negative integer (given: ${seed})` })
      const dir = options.out ?? path.join("runs", `${pipeline.name}-${source === undefined ? "" : "replay-"}${timestamp()}`)
      if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
        throw new UsageError({ message: `${dir} already exists and is not empty; choose another --out or continue it with --resume ${dir}` })
      }
      return { dir, config: resolved.value as ConfigOf<P["settings"]>, seed, manifest: undefined }
    },
    catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: String(e) }))
  })

/** Runs (or resumes) a pipeline to completion in its run folder. */
export const runPipeline = <P extends AnyPipeline>(pipeline: P, options: RunOptions = {}): Effect.Effect<
  RunResult<P>,
  UsageError | NodeFailure | NonFiniteError | StoreError | PipelineError<P>,
  PipelineRequirements<P>
> =>
  Effect.gen(function*() {
    const prep = yield* prepareRun(pipeline, options)
    const { dir, config, seed } = prep
    const store = RunStore.make(dir)
    const manifestFile = path.join(dir, "manifest.json")
    const metricsFile = path.join(dir, "metrics.jsonl")
    const total = pipeline.iterations(config)
    const replay = yield* Effect.try({ try: () => planReplay(pipeline, options.replay), catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: String(e) })) })

    const setup = yield* Effect.try({
      try: () => {
        fs.mkdirSync(dir, { recursive: true })
        const release = acquireLock(dir)
        let manifest: Manifest
        if (prep.manifest !== undefined) {
          manifest = { ...prep.manifest, status: "running", updated_at: now(), resumed_at: [...(prep.manifest.resumed_at ?? []), now()] }
          cleanUncommitted(dir, manifest.iterations_complete, metricsFile)
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
            iterations: total,
            iterations_complete: 0,
            ...(options.replay === undefined ? {} : { replay_of: { source: options.replay.source, from: replay!.from, overrides: { ...(options.set ?? {}) } } })
          }
        }
        writeFileAtomic(manifestFile, manifestText(manifest))
        return { release, manifest }
      },
      catch: asStoreError(manifestFile)
    })
    let manifest = setup.manifest
    yield* Effect.addFinalizer(() => Effect.sync(setup.release))
    // Iterations whose commit has landed, and the commit being written (at most one).
    let committed = manifest.iterations_complete
    let inFlight: { readonly iteration: number; readonly done: Promise<void>; readonly written: ReadonlyArray<string> } | undefined
    // What a failed commit or iteration wrote goes; a path that cannot be removed is left to resume's clean-up.
    const remove = (files: ReadonlyArray<string>) => {
      for (const f of files) {
        try {
          fs.rmSync(f, { recursive: true, force: true })
        } catch {
          // resume removes uncommitted iterations' files by name
        }
      }
    }
    const awaitCommit = Effect.suspend(() => {
      const job = inFlight
      if (job === undefined) return Effect.void
      return Effect.tryPromise({ try: () => job.done, catch: asStoreError(dir) }).pipe(
        Effect.tap(() => Effect.sync(() => (committed = job.iteration + 1))),
        Effect.tapError(() => Effect.sync(() => remove(job.written))),
        Effect.ensuring(Effect.sync(() => (inFlight = undefined)))
      )
    })
    // Runs before the lock is released (finalizers run last-added first): nothing writes after that.
    yield* Effect.addFinalizer(() => Effect.ignore(awaitCommit))
    const allMetrics = readMetrics(metricsFile)

    const info: { -readonly [K in keyof RunInfo]: RunInfo[K] extends Readonly<Record<string, infer V>> ? Record<string, V> : RunInfo[K] } = fs.existsSync(path.join(dir, "meta/info.json"))
      ? JSON.parse(fs.readFileSync(path.join(dir, "meta/info.json"), "utf8"))
      : { schema_version: 1, pipeline: pipeline.name, outputs: {}, details: pipeline.info(config) }

    // The state entering the first iteration to run: the initial state, or the last checkpoint's.
    const start = manifest.iterations_complete
    let state: unknown = undefined
    if (pipeline.state !== undefined) {
      if (start === 0) {
        state = yield* pipeline.state.initial(config).pipe(
          Effect.mapError((e) => new NodeFailure({ pipeline: pipeline.name, node: "state.initial", iteration: 0, message: String(e), cause: e }))
        )
      } else {
        const ckpt = path.join(dir, "checkpoints", iterFile(start - 1))
        state = yield* Effect.try({
          try: () => {
            const files = Object.fromEntries(fs.readdirSync(ckpt).map((f) => [f, new Uint8Array(fs.readFileSync(path.join(ckpt, f)))]))
            return pipeline.state!.decode(files, config)
          },
          catch: asStoreError(ckpt)
        })
      }
    }

    const progress = makeProgress(options.progress ?? "auto", pipeline.name, total, start)
    // Outputs of entries computed once per process (`.once()`): their inputs do not change.
    const memo = new Map<string, unknown>()
    let outputs: Record<string, unknown> = {}
    for (let iteration = start; iteration < total; iteration++) {
      const written: Array<string> = []
      const attempt = Effect.gen(function*() {
        outputs = { config, state, iteration }
        const metrics: Record<string, number> = {}
        const metricNode: Record<string, string> = {}
        for (const level of pipeline.levels as ReadonlyArray<ReadonlyArray<string>>) {
          const results = yield* Effect.forEach(level, (entry) => {
            const bound = pipeline.nodes[entry]
            if (bound.memoized === true && memo.has(entry)) return Effect.succeed([entry, memo.get(entry), {} as Readonly<Record<string, number>>] as const)
            if (replay?.skipped.has(entry) === true) {
              const copied = replay.metricsOf(entry, iteration)
              if (!replay.restored.has(entry)) return Effect.succeed([entry, undefined, copied] as const)
              return Effect.tryPromise({
                try: () => bound.restore!({ source: replay.source, iteration, outputs }) as Promise<unknown>,
                catch: (e) => new NodeFailure({ pipeline: pipeline.name, node: entry, iteration, message: `restoring from ${replay.source}: ${e instanceof Error ? e.message : String(e)}`, cause: e })
              }).pipe(Effect.map((out) => [entry, out, copied] as const))
            }
            const input = Object.fromEntries(Object.entries(bound.wiring as Record<string, string>).map(([k, from]) => [k, outputs[from]]))
            const t0 = performance.now()
            return (bound.node.run(input) as Effect.Effect<unknown, unknown, never>).pipe(
              Effect.provideService(NodeContext, NodeContext.of({ pipeline: pipeline.name, entry, iteration, seed })),
              Effect.provideService(Rng, Rng.forCall(seed, iteration, entry)),
              Effect.provideService(RunStore, store),
              Effect.withSpan(`node.${entry}`, { attributes: { node: bound.node.name, iteration } }),
              Effect.map((out) => {
                progress.nodeDone(entry, iteration, (performance.now() - t0) / 1000)
                let m: Readonly<Record<string, number>> = bound.node.metrics?.(out, input) ?? {}
                checkFinite(`pipeline ${pipeline.name}, iteration ${iteration}, node ${entry}`, m)
                if (bound.memoized === true) {
                  memo.set(entry, out)
                  // Logged with iteration 0 only, so a resumed run's metrics equal an uninterrupted run's.
                  if (iteration > 0) m = {}
                }
                return [entry, out, m] as const
              })
            )
          }, { concurrency: "unbounded" })
          for (const [entry, out, m] of results) {
            outputs[entry] = out
            for (const [k, v] of Object.entries(m)) {
              if (k in metrics) return yield* new NodeFailure({ pipeline: pipeline.name, node: entry, iteration, message: `metric "${k}" is logged by two entries` })
              metrics[k] = v
              metricNode[k] = entry
            }
          }
        }
        // The commit, as bytes, handed to the commit worker; the next iteration starts while it is written.
        const job = yield* Effect.try({
          try: (): CommitJob => {
            const tables: Array<{ file: string; ipc: Uint8Array }> = []
            const files: Array<{ file: string; data: Uint8Array | string }> = []
            for (const [entry, bound] of Object.entries(pipeline.nodes as Record<string, { persisted?: { kind: string; dir?: string; file?: string } }>)) {
              const spec = bound.persisted
              if (spec === undefined) continue
              const output = outputs[entry] as arrow.Table | string | Uint8Array | undefined
              // An entry may have nothing to persist this time (e.g. no trajectories kept by a sweep).
              if (output === undefined) continue
              const rel = spec.kind === "once" ? spec.file! : path.join(spec.dir!, `${iterFile(iteration)}.parquet`)
              written.push(path.join(dir, rel))
              if (typeof output === "string" || output instanceof Uint8Array) {
                files.push({ file: store.path(rel), data: output })
                continue
              }
              tables.push({ file: store.path(rel), ipc: tableBytes(output) })
              info.outputs[entry] = { ...describeTable(output), file: spec.kind === "once" ? rel : spec.dir! }
            }
            const dirs: Array<{ dir: string; files: Record<string, Uint8Array | string> }> = []
            if (pipeline.state !== undefined) {
              const ckpt = path.join(dir, "checkpoints", iterFile(iteration))
              written.push(ckpt)
              dirs.push({ dir: ckpt, files: { ...pipeline.state.encode(outputs[pipeline.state.next]), "rng.json": JSON.stringify({ seed, next_iteration: iteration + 1 }) } })
            }
            const rows: Array<MetricRow> = Object.entries(metrics).map(([name, value]) => ({ iteration, name, value, node: metricNode[name] }))
            allMetrics.push(...rows)
            files.push({ file: path.join(dir, "meta/info.json"), data: JSON.stringify(info, null, 2) + "\n" })
            files.push({ file: store.path("metrics.parquet"), data: metricsParquet(allMetrics) })
            manifest = { ...manifest, iterations_complete: iteration + 1, updated_at: now() }
            return { tables, dirs, files, append: { file: metricsFile, text: rows.map((r) => JSON.stringify(r) + "\n").join("") }, commitPoint: { file: manifestFile, data: manifestText(manifest) } }
          },
          catch: asStoreError(dir)
        })
        yield* awaitCommit
        if (pipeline.state !== undefined) state = outputs[pipeline.state.next]
        const done = commitInBackground(job).then(() => progress.iterationDone(iteration, metrics))
        inFlight = { iteration, done, written }
      })
      yield* attempt.pipe(
        Effect.catchCause((cause) =>
          Effect.gen(function*() {
            // A commit still being written lands (or fails) first; then what this iteration left goes.
            const landed = yield* Effect.exit(awaitCommit)
            remove(written)
            cleanUncommitted(dir, committed, metricsFile)
            const error = Cause.squash(Exit.isFailure(landed) ? landed.cause : cause)
            manifest = { ...manifest, iterations_complete: committed, status: "failed", updated_at: now(), error: error instanceof Error ? error.message : String(error) }
            writeFileAtomic(manifestFile, manifestText(manifest))
            progress.finish()
            return yield* Effect.failCause(Exit.isFailure(landed) ? landed.cause : cause)
          })
        )
      )
    }
    yield* awaitCommit
    progress.finish()
    manifest = { ...manifest, status: "complete", updated_at: now() }
    yield* Effect.try({ try: () => writeFileAtomic(manifestFile, manifestText(manifest)), catch: asStoreError(manifestFile) })
    yield* Effect.try({ try: () => writeReport(dir), catch: asStoreError(path.join(dir, "report.html")) })
    return {
      dir,
      config,
      iterationsComplete: manifest.iterations_complete,
      outputs,
      metrics: allMetrics
    }
  }).pipe(Effect.scoped, Effect.withSpan("pipeline.run", { attributes: { pipeline: pipeline.name } })) as never
