/**
 * `etaflow run reward-model`: trains (or reuses from the cache) the MNIST classifier that scores
 * samples, reports its held-out accuracy, and writes it as ONNX and safetensors.
 */
import { Persist } from "../kernel/node.ts"
import { Pipeline } from "../kernel/pipeline.ts"
import { trainingData } from "../nodes/setup/dataset.ts"
import { modelOnnx, modelWeights } from "../nodes/setup/model-files.ts"
import { rewardClassifier, RewardModelSettings } from "../nodes/setup/reward-classifier.ts"
import { writeReport } from "../report/report.ts"

export { RewardModelSettings }

export const rewardModel = Pipeline.define({
  name: "reward-model",
  doc: "train the MNIST reward classifier (cached), report test_accuracy, export ONNX + safetensors",
  settings: RewardModelSettings,
  nodes: {
    data: trainingData.from({ config: "config" }),
    classifier: rewardClassifier.from({ data: "data", config: "config" }),
    onnx: modelOnnx.from({ model: "classifier" }).persist(Persist.once("classifier.onnx")),
    weights: modelWeights.from({ model: "classifier" }).persist(Persist.once("classifier.safetensors"))
  },
  info: () => ({ input: "x [B, 784] pixels in [0, 1]", output: "logp [B, 10] log-probabilities of the digits" }),
  onComplete: writeReport
})
