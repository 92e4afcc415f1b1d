/** A data set as written by the `dataset` pipeline: one row per example, latents as tensors. */
import { Column, type ColumnsOf, TableDef } from "./columns.ts"

export const DatasetTable = new TableDef("dataset", 1, {
  index: Column.int32("example index within the data set"),
  split: Column.utf8("'train' or 'test' (fixed split)"),
  label: Column.int32("class label (MNIST digit, mixture component, moon, ring); null when unlabelled", true),
  x: Column.tensor("the example: 28×28 in [0,1] for MNIST, 2-D points for toys")
})

export type DatasetColumns = ColumnsOf<typeof DatasetTable.columns>
