/**
 * An iteration's commit as bytes for the commit worker (store/commit.ts): the outputs its entries persist
 * (retention permitting), the checkpoint of the next state, the metric rows and the run folder's summaries,
 * with the manifest rewrite as the commit point.
 */
import type * as arrow from "apache-arrow"
import * as path from "node:path"
import { shapeOf } from "../schemas/columns.ts"
import type { MetricRow } from "../schemas/manifest.ts"
import { type CommitJob, tableBytes } from "../store/commit.ts"
import { INDEX_DIR } from "../store/integrity.ts"
import { type Journal, nextState, type RunContext } from "./iteration.ts"
import type { AnyBound, Persistable } from "./node.ts"
import { iterFile, manifestText, metricsParquet, now } from "./run-folder.ts"

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

type CommitFile = { file: string; data: Uint8Array | string; record?: false }

/** The entries' outputs the iteration persists (retention permitting), as Arrow IPC tables and plain files. */
const persistedOutputs = (
  ctx: RunContext,
  journal: Journal,
  iteration: number,
  outputs: Readonly<Record<string, unknown>>,
  written: Array<string>
) => {
  const { pipeline, dir, store } = ctx
  const last = pipeline.iterations(ctx.config) - 1
  const tables: Array<{ file: string; ipc: Uint8Array }> = []
  const files: Array<CommitFile> = []
  for (const [entry, bound] of Object.entries(pipeline.nodes as Record<string, AnyBound>)) {
    const spec = bound.persisted
    const raw = outputs[entry] as Persistable
    // An entry may have nothing to persist this time (e.g. no trajectories kept by a sweep).
    if (spec === undefined || raw === undefined) continue
    // Retention: what is not kept a replay regenerates.
    if (spec.kind === "per-iteration" && !ctx.retention.keepOutput(spec.dir, iteration, last)) continue
    const output = typeof raw === "function" ? raw() : raw
    const rel = spec.kind === "once" ? spec.file : path.join(spec.dir, `${iterFile(iteration)}.parquet`)
    written.push(path.join(dir, rel))
    if (typeof output === "string" || output instanceof Uint8Array) {
      files.push({ file: store.path(rel), data: output })
      continue
    }
    tables.push({ file: store.path(rel), ipc: tableBytes(output) })
    journal.info.outputs[entry] = { ...describeTable(output), file: spec.kind === "once" ? rel : spec.dir }
  }
  return { tables, files }
}

/** The iteration's checkpoint (the next state and the RNG position), and what of the previous one retention prunes. */
const checkpointOf = (
  ctx: RunContext,
  iteration: number,
  outputs: Readonly<Record<string, unknown>>,
  written: Array<string>
) => {
  const { pipeline, dir } = ctx
  const dirs: Array<{ dir: string; files: Record<string, Uint8Array | string>; owned: boolean }> = []
  const prune: Array<string> = []
  if (pipeline.state === undefined) return { dirs, prune }
  const ckpt = path.join(dir, "checkpoints", iterFile(iteration))
  written.push(ckpt)
  const rng = JSON.stringify({ seed: ctx.seed, next_iteration: iteration + 1 })
  const files = { ...pipeline.state.encode(nextState(pipeline, outputs)), "rng.json": rng }
  dirs.push({ dir: ckpt, files, owned: pipeline.state.encodesCopies === true })
  // Once this checkpoint lands, the previous one keeps only what retention says (resume needs the newest).
  if (iteration > 0) {
    const older = path.join(dir, "checkpoints", iterFile(iteration - 1))
    prune.push(
      ...Object.keys(files).filter((f) => !ctx.retention.keepInOlderCheckpoint(f)).map((f) => path.join(older, f))
    )
  }
  return { dirs, prune }
}

/** The commit of an iteration as bytes for the commit worker; `written` collects what it will create. */
export const commitJob = (
  ctx: RunContext,
  journal: Journal,
  iteration: number,
  outputs: Readonly<Record<string, unknown>>,
  iterationMetrics: {
    metrics: Readonly<Record<string, number>>
    metricNode: Readonly<Record<string, string>>
    seconds: Readonly<Record<string, number>>
  },
  written: Array<string>
): CommitJob => {
  const { dir, store } = ctx
  const { tables, files } = persistedOutputs(ctx, journal, iteration, outputs, written)
  const { dirs, prune } = checkpointOf(ctx, iteration, outputs, written)
  const rows: Array<MetricRow> = Object.entries(iterationMetrics.metrics)
    .map(([name, value]) => ({ iteration, name, value, node: iterationMetrics.metricNode[name] }))
  journal.allMetrics.push(...rows)
  // Summaries every commit rewrites: an interrupted commit may leave them ahead of the commit point, so
  // they are the folder's bookkeeping, not records (store/integrity.ts).
  const summary = (file: string, data: string | Uint8Array) => files.push({ file, data, record: false })
  summary(path.join(dir, "meta/info.json"), JSON.stringify(journal.info, null, 2) + "\n")
  journal.timings.push({ iteration, seconds: iterationMetrics.seconds })
  summary(path.join(dir, "meta/timings.json"), JSON.stringify(journal.timings) + "\n")
  summary(store.path("metrics.parquet"), metricsParquet(journal.allMetrics))
  journal.manifest = { ...journal.manifest, iterations_complete: iteration + 1, updated_at: now() }
  const append = { file: path.join(dir, "metrics.jsonl"), text: rows.map((r) => JSON.stringify(r) + "\n").join("") }
  const index = { file: path.join(dir, INDEX_DIR, `${iterFile(iteration)}.json`), root: dir, iteration }
  written.push(index.file)
  return {
    index,
    tables,
    dirs,
    files,
    append,
    commitPoint: { file: path.join(dir, "manifest.json"), data: manifestText(journal.manifest) },
    prune
  }
}
