/**
 * One iteration of a run: its DAG level by level (each node call with its services, restored on a
 * replay, or reused when computed once), and its commit as bytes for the commit worker.
 */
import type * as arrow from "apache-arrow"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { shapeOf } from "../schemas/columns.ts"
import type { Manifest, MetricRow, RunInfo } from "../schemas/manifest.ts"
import { type CommitJob, tableBytes } from "../store/commit.ts"
import { NodeFailure, NonFiniteError } from "./errors.ts"
import type { AnyBound } from "./node.ts"
import type { AnyPipeline } from "./pipeline.ts"
import type { Progress } from "./progress.ts"
import type { ReplayPlan } from "./replay-plan.ts"
import { iterFile, manifestText, metricsParquet, now } from "./run-folder.ts"
import { NodeContext, Rng, RunStore } from "./services.ts"

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

/** What one iteration works with. */
export interface RunContext {
  readonly pipeline: AnyPipeline
  readonly dir: string
  readonly config: Readonly<Record<string, unknown>>
  readonly seed: number
  readonly store: RunStore["Service"]
  readonly storeLayer: Layer.Layer<RunStore>
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
    ctx.storeLayer
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
export const runIteration = (ctx: RunContext, iteration: number, state: unknown) =>
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
export const nextState = (pipeline: AnyPipeline, outputs: Readonly<Record<string, unknown>>) => {
  const def = pipeline.state!
  const output = outputs[def.next]
  return def.select === undefined ? output : def.select(output)
}

export type Info = {
  -readonly [K in keyof RunInfo]: RunInfo[K] extends Readonly<Record<string, infer V>> ? Record<string, V> : RunInfo[K]
}

export interface Journal {
  manifest: Manifest
  readonly info: Info
  readonly allMetrics: Array<MetricRow>
}

/** The commit of an iteration as bytes for the commit worker; `written` collects what it will create. */
export const commitJob = (
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

export const readInfo = (pipeline: AnyPipeline, dir: string, config: Readonly<Record<string, unknown>>): Info => {
  const file = path.join(dir, "meta/info.json")
  return fs.existsSync(file)
    ? JSON.parse(fs.readFileSync(file, "utf8"))
    : { schema_version: 1, pipeline: pipeline.name, outputs: {}, details: pipeline.info(config) }
}
