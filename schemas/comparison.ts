/**
 * The comparison table of an experiment (`comparison.parquet`): one row per (arm, metric, iteration)
 * with the mean over seeds, its standard error and the seed count, and one row per (arm, reference
 * arm, metric, iteration) with the mean paired difference (same seed = same prompts and noise), its
 * paired standard error and the unpaired one.
 */
import { Column, TableDef } from "./columns.ts"

export const ComparisonTable = new TableDef("comparison", 1, {
  kind: Column.utf8("arm (per-arm summary) or difference (arm − reference, paired by seed)"),
  arm: Column.utf8("the arm's label"),
  reference: Column.utf8("the arm it is compared with (difference rows)", true),
  metric: Column.utf8("metric name, as in the runs' metrics.jsonl"),
  iteration: Column.int32("iteration"),
  mean: Column.float64("mean over seeds (difference rows: mean of the per-seed differences)"),
  se: Column.float64("standard error across seeds (difference rows: of the paired differences); NaN for n < 2"),
  se_unpaired: Column.float64("difference rows: √(se_arm² + se_reference²), as if the arms were independent", true),
  n: Column.int32("seeds that have this value")
})
