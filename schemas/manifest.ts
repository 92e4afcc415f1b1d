/** The run folder's JSON documents: `manifest.json`, `meta/info.json` and metric rows. */
import { Schema } from "effect"
import { Column, TableDef } from "./columns.ts"

export const RUN_FORMAT = "etaflow.run/1"

export const RunStatus = Schema.Literals(["running", "complete", "failed", "interrupted"])

export const Manifest = Schema.Struct({
  /** Layout version of the run folder. */
  format: Schema.Literal(RUN_FORMAT),
  pipeline: Schema.String,
  /** The fully resolved settings (defaults filled in). */
  config: Schema.Record(Schema.String, Schema.Unknown),
  seed: Schema.Int,
  /** Versions of etaflow, Node.js and the packages that shape results. */
  versions: Schema.Record(Schema.String, Schema.String),
  created_at: Schema.String,
  updated_at: Schema.String,
  status: RunStatus,
  iterations: Schema.Int,
  /** Iterations 0..iterations_complete-1 are committed; this field is the commit point. */
  iterations_complete: Schema.Int,
  /** Why the run failed, when it did. */
  error: Schema.optionalKey(Schema.String),
  /** A run its `stopWhen` rules ended early: complete, after this iteration, for this reason. */
  stopped: Schema.optionalKey(Schema.Struct({ iteration: Schema.Int, reason: Schema.String })),
  /** Times the run was resumed (ISO dates). */
  resumed_at: Schema.optionalKey(Schema.Array(Schema.String)),
  /**
   * Versions that changed when the run was resumed (`versions` holds those it was created with): from
   * `iteration` on, its results were computed with `to` instead of `from`.
   */
  version_changes: Schema.optionalKey(
    Schema.Array(Schema.Struct({
      at: Schema.String,
      iteration: Schema.Int,
      package: Schema.String,
      from: Schema.String,
      to: Schema.String
    }))
  ),
  /** Where a replay came from: the stored run, the entry it restarted at, the settings it changed. */
  replay_of: Schema.optionalKey(
    Schema.Struct({
      source: Schema.String,
      from: Schema.String,
      overrides: Schema.Record(Schema.String, Schema.String)
    })
  )
})
export type Manifest = typeof Manifest.Type

export const MetricRow = Schema.Struct({
  iteration: Schema.Int,
  name: Schema.String,
  value: Schema.Finite,
  /** The entry that logged it (replay copies the rows of the entries it does not recompute). */
  node: Schema.optionalKey(Schema.String)
})
export type MetricRow = typeof MetricRow.Type

/** `metrics.parquet`: one row per (iteration, metric). */
export const MetricsTable = new TableDef("metrics", 1, {
  iteration: Column.int32("iteration the metric belongs to"),
  name: Column.utf8("metric name, as in metrics.jsonl"),
  value: Column.float64("metric value"),
  node: Column.utf8("pipeline entry that logged the metric", true)
})

export const TableInfo = Schema.Struct({
  /** A per-iteration folder (`trajectories`) or a single file (`dataset.parquet`). */
  file: Schema.String,
  table: Schema.String,
  version: Schema.Int,
  /** Tensor columns and their shapes. */
  shapes: Schema.Record(Schema.String, Schema.Array(Schema.Int)),
  columns: Schema.Array(Schema.String)
})

export const RunInfo = Schema.Struct({
  schema_version: Schema.Int,
  pipeline: Schema.String,
  /** Persisted outputs: where (a folder of per-iteration files or one file) and their tables. */
  outputs: Schema.Record(Schema.String, TableInfo),
  /** Pipeline-specific facts: time convention, sampler, reward names … */
  details: Schema.Record(Schema.String, Schema.Unknown)
})
export type RunInfo = typeof RunInfo.Type
