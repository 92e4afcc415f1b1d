/**
 * `etaflow run reward-model`: trains (or reuses from the cache) the MNIST classifier that scores
 * samples, reports its held-out accuracy, and writes it as ONNX and safetensors.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { Persist } from "../kernel/node.ts"
import { Setting } from "../schemas/settings.ts"
import { dataset } from "../nodes/dataset.ts"
import { datasetRequest } from "../nodes/dataset-request.ts"
import { rewardClassifier } from "../nodes/reward-classifier.ts"
import { modelOnnx, modelWeights } from "../nodes/model-files.ts"

export const RewardModelSettings = {
  dataset: Setting.literal(["mnist"], "mnist", "data set of the classifier"),
  points: Setting.int(10_000, "unused for MNIST (kept for the shared data-set node)", { min: 1 }),
  hidden: Setting.int(512, "hidden width of the MLP classifier", { min: 1 }),
  layers: Setting.int(2, "hidden layers", { min: 1 }),
  epochs: Setting.int(40, "passes over the training split", { min: 1 }),
  batch: Setting.int(128, "minibatch size", { min: 1 }),
  lr: Setting.number(2e-3, "peak AdamW learning rate (cosine decay to 0)", { min: 0 }),
  weightDecay: Setting.number(1e-4, "AdamW decoupled weight decay", { min: 0 }),
  shift: Setting.int(2, "random translation of training digits, in pixels", { min: 0 }),
  threads: Setting.int(2, "onnxruntime intra-op threads (results are reproducible for a fixed count)", { min: 1 })
}

export const rewardModel = Pipeline.define({
  name: "reward-model",
  doc: "train the MNIST reward classifier (cached), report test_accuracy, export ONNX + safetensors",
  settings: RewardModelSettings,
  nodes: {
    request: datasetRequest.from({ config: "config" }),
    data: dataset.from({ request: "request" }),
    classifier: rewardClassifier.from({ data: "data", config: "config" }),
    onnx: modelOnnx.from({ model: "classifier" }).persist(Persist.once("classifier.onnx")),
    weights: modelWeights.from({ model: "classifier" }).persist(Persist.once("classifier.safetensors"))
  },
  info: () => ({ input: "x [B, 784] pixels in [0, 1]", output: "logp [B, 10] log-probabilities of the digits" })
})
