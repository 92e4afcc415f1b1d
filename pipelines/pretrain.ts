/**
 * `etaflow run pretrain`: trains the base generator of a data set — a velocity network (rectified
 * flow: Flow-GRPO, MixGRPO, Precise) or an ε network (VP: DDPO, SDPO) — or reuses it from the cache,
 * and measures its ODE samples at 1–16 steps (for MNIST: the reward classifier's and the judge's
 * accuracy on the prompted digit, FD to the real test digits, diversity). Why the defaults are what
 * they are (steps, learning rate, EMA, no guidance), with the measured alternatives: docs/algorithms.md §11.1.
 */
import { Persist } from "../kernel/node.ts"
import { Pipeline } from "../kernel/pipeline.ts"
import { baseSamples } from "../nodes/eval/base-samples.ts"
import { baseModel, PretrainSettings } from "../nodes/setup/base-model.ts"
import { trainingData } from "../nodes/setup/dataset.ts"
import { modelOnnx, modelWeights } from "../nodes/setup/model-files.ts"
import { defaultClassifier, defaultJudge } from "../nodes/setup/reward-classifier.ts"
import { tableOf } from "../nodes/studies/samples-table.ts"
import { writeReport } from "../report/report.ts"

export { PretrainSettings }

export const pretrain = Pipeline.define({
  name: "pretrain",
  doc: "train (or reuse from the cache) the base velocity/ε network and measure its ODE samples",
  settings: PretrainSettings,
  nodes: {
    data: trainingData.from({ config: "config" }),
    // The reward-model defaults, so `pretrain` and `reward-model` share one cached classifier.
    classifier: defaultClassifier.from({ data: "data", config: "config" }),
    judge: defaultJudge.from({ data: "data", config: "config" }),
    base: baseModel.from({ data: "data", config: "config" }),
    samples: baseSamples.from({
      base: "base",
      classifier: "classifier",
      judge: "judge",
      data: "data",
      config: "config"
    }),
    samplesTable: tableOf.from({ from: "samples" }).persist(Persist.once("samples.parquet")),
    onnx: modelOnnx.from({ model: "base" }).persist(Persist.once("policy.onnx")),
    weights: modelWeights.from({ model: "base" }).persist(Persist.once("weights.safetensors"))
  },
  check: (c) =>
    c.arch !== "mlp" && c.dataset !== "mnist"
      ? [`setting "arch": ${c.arch} is a 28×28 image network; dataset is ${c.dataset}`]
      : [],
  info: (c) => ({
    time_convention: c.process === "rf"
      ? "rectified flow, t = σ ∈ [0, 1]"
      : `VP ${c.schedule}, integer timesteps 0..999`,
    dataset: c.dataset
  }),
  onComplete: writeReport
})
