/** datasetRequest: the data-set part of a training pipeline's config, in the form `dataset` reads. */
import { Effect } from "effect"
import { Node, Port } from "../kernel/node.ts"
import type { DatasetName, DatasetRequest } from "./dataset.ts"

export const datasetRequest = Node.make({
  name: "datasetRequest",
  doc: "which data set a training pipeline reads",
  inputs: { config: Port.of<{ readonly dataset: DatasetName; readonly points: number }>() },
  run: ({ config }): Effect.Effect<DatasetRequest> => Effect.succeed({ name: config.dataset, n: config.points, testFraction: 0.2 })
})
