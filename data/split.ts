/** Rows of one split of a stored data set (DatasetTable) as flat arrays for training. */
import type * as arrow from "apache-arrow"
import { DatasetTable } from "../schemas/dataset.ts"

export interface SplitData {
  readonly x: Float32Array
  readonly label: Int32Array
  readonly count: number
  readonly dim: number
  readonly shape: ReadonlyArray<number>
  /** Number of classes (max label + 1); 0 when the data set is unlabelled. */
  readonly classes: number
}

export const splitOf = (table: arrow.Table, split: "train" | "test", source = "dataset"): SplitData => {
  const { rows, columns, shapes } = DatasetTable.read(table, source)
  const shape = shapes.x
  const dim = shape.reduce((a, b) => a * b, 1)
  const idx = Array.from({ length: rows }, (_, i) => i).filter((i) => columns.split[i] === split)
  const x = new Float32Array(idx.length * dim)
  idx.forEach((r, j) => x.set(columns.x.subarray(r * dim, (r + 1) * dim), j * dim))
  const labels = columns.label === null
    ? null
    : columns.label instanceof Int32Array
    ? columns.label
    : columns.label.values
  const label = Int32Array.from(idx, (i) => labels?.[i] ?? 0)
  return {
    x,
    label,
    count: idx.length,
    dim,
    shape,
    classes: labels === null ? 0 : labels.reduce((m, v) => Math.max(m, v), 0) + 1
  }
}
