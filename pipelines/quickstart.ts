/**
 * `etaflow run quickstart`: the most complete real pipeline that exists so far — the MNIST data
 * set as Parquet. It becomes SDPO on MNIST when the RL pipelines land.
 */
import { datasetPipeline } from "./dataset.ts"
import type { Pipeline } from "./kernel/pipeline.ts"

export const quickstart: typeof datasetPipeline = {
  ...datasetPipeline,
  name: "quickstart",
  doc: "start here: writes the MNIST data set as Parquet (SDPO on MNIST once the RL pipelines land)"
} satisfies Pipeline<typeof datasetPipeline.settings, undefined, typeof datasetPipeline.nodes>
