/**
 * `etaflow run pretrain`: trains the base generator of a data set — a velocity network (rectified
 * flow: Flow-GRPO, MixGRPO, Precise) or an ε network (VP: DDPO, SDPO) — or reuses it from the cache,
 * and measures its ODE samples (for MNIST: the reward classifier's accuracy on the prompted digit).
 */
import { Effect } from "effect"
import { Pipeline } from "../kernel/pipeline.ts"
import { Node, Persist, Port } from "../kernel/node.ts"
import { Setting, type ConfigOf } from "../schemas/settings.ts"
import { dataset, DATASETS } from "../nodes/dataset.ts"
import { datasetRequest } from "../nodes/dataset-request.ts"
import { rewardClassifier, type RewardModelRequest } from "../nodes/reward-classifier.ts"
import { baseModel } from "../nodes/base-model.ts"
import { baseSamples } from "../nodes/base-samples.ts"
import { modelOnnx, modelWeights } from "../nodes/model-files.ts"
import { tableOf } from "../nodes/table-of.ts"
import { VP_SCHEDULES } from "../diffusion/process.ts"
import { RewardModelSettings } from "./reward-model.ts"

export const PretrainSettings = {
  dataset: Setting.literal(DATASETS, "mnist", "data set to model"),
  points: Setting.int(10_000, "points of a 2-D toy data set", { min: 1 }),
  process: Setting.literal(["rf", "vp"], "rf", "rectified flow (velocity) or VP diffusion (ε)"),
  schedule: Setting.literal(VP_SCHEDULES, "scaled-linear", "VP ᾱ schedule, 1,000 training steps (ignored for rf)"),
  hidden: Setting.int(512, "hidden width of the network", { min: 1 }),
  blocks: Setting.int(3, "residual blocks", { min: 0 }),
  steps: Setting.int(1500, "optimizer steps", { min: 1 }),
  batch: Setting.int(256, "minibatch size", { min: 1 }),
  lr: Setting.number(1e-3, "peak AdamW learning rate (cosine decay to 0)", { min: 0 }),
  condDrop: Setting.number(0.1, "probability of training on the null condition (enables classifier-free guidance)", { min: 0, max: 1 }),
  ema: Setting.number(0.999, "decay of the weights' moving average that becomes the model (0: last iterate)", { min: 0, max: 1 }),
  cfg: Setting.number(3, "classifier-free guidance scale of the evaluation samples (1 = none)", { min: 0 }),
  evalSamples: Setting.int(500, "ODE samples drawn to measure the model", { min: 1 }),
  evalSteps: Setting.int(20, "ODE steps of those samples", { min: 1 }),
  threads: Setting.int(2, "onnxruntime intra-op threads", { min: 1 })
}

/** The reward classifier of a pretrain run: the reward-model pipeline's defaults, so both share one cache entry. */
const classifierRequest = Node.make({
  name: "classifierRequest",
  doc: "the reward-model settings used to score samples",
  inputs: { config: Port.of<ConfigOf<typeof PretrainSettings>>() },
  run: ({ config }): Effect.Effect<RewardModelRequest> =>
    Effect.succeed({
      ...(Object.fromEntries(Object.entries(RewardModelSettings).map(([k, s]) => [k, s.default])) as ConfigOf<typeof RewardModelSettings>),
      dataset: config.dataset,
      threads: config.threads
    })
})

export const pretrain = Pipeline.define({
  name: "pretrain",
  doc: "train (or reuse from the cache) the base velocity/ε network and measure its ODE samples",
  settings: PretrainSettings,
  nodes: {
    request: datasetRequest.from({ config: "config" }),
    data: dataset.from({ request: "request" }),
    classifierConfig: classifierRequest.from({ config: "config" }),
    classifier: rewardClassifier.from({ data: "data", config: "classifierConfig" }),
    base: baseModel.from({ data: "data", config: "config" }),
    samples: baseSamples.from({ base: "base", classifier: "classifier", config: "config" }),
    samplesTable: tableOf.from({ from: "samples" }).persist(Persist.once("samples.parquet")),
    onnx: modelOnnx.from({ model: "base" }).persist(Persist.once("policy.onnx")),
    weights: modelWeights.from({ model: "base" }).persist(Persist.once("weights.safetensors"))
  },
  info: (c) => ({ time_convention: c.process === "rf" ? "rectified flow, t = σ ∈ [0, 1]" : `VP ${c.schedule}, integer timesteps 0..999`, dataset: c.dataset })
})
