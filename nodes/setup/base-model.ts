/**
 * base: the pretrained velocity (rectified flow) or ε (VP) network of a data set — from the
 * model cache when one was trained with the same config and seed, else trained now and cached.
 * RL pipelines start from it.
 */
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import { pixelsToLatent } from "../../data/mnist.ts"
import { splitOf } from "../../data/split.ts"
import {
  type Parameterization,
  type Process,
  rectifiedFlow,
  VP_SCHEDULES,
  vpDiscrete,
  type VpSchedule
} from "../../diffusion/process.ts"
import { GraphError } from "../../engine/graph.ts"
import { toOnnx } from "../../engine/onnx.ts"
import type { ParamValues } from "../../engine/params.ts"
import { SessionError } from "../../engine/session.ts"
import { TrainError } from "../../engine/train-step.ts"
import { Node, Port } from "../../kernel/node.ts"
import { NodeContext, Rng } from "../../kernel/services.ts"
import { loadCached, storeCached, weightsFile } from "../../models/cache.ts"
import { velocityGraph } from "../../models/network-policy.ts"
import { describeNet, velocityNet, type VelocityNetConfig } from "../../models/velocity-net.ts"
import { defaultsOf, Setting } from "../../schemas/settings.ts"
import { trainVelocity, type VelocityTraining } from "../../training/velocity.ts"
import { type DatasetName, DATASETS } from "./dataset.ts"
import type { ModelFiles } from "./model-files.ts"

/** The base model's training settings, with the network and process given by name and size. */
export type PretrainRequest = Omit<VelocityTraining, "net" | "process" | "trainSteps"> & {
  readonly dataset: string
  readonly process: "rf" | "vp"
  readonly schedule: VpSchedule
  readonly hidden: number
  readonly blocks: number
  readonly arch: Arch
}

export const ARCHS = ["mlp", "unet", "dit"] as const
export type Arch = (typeof ARCHS)[number]

/**
 * The network of a base: the MLP (its config has no `arch`, as before there were others), or for MNIST
 * etaflow's U-Net or DiT (docs/byom.md) — `hidden` and `blocks` size only the MLP.
 */
export const baseNetOf = (
  req: Pick<PretrainRequest, "arch" | "hidden" | "blocks">,
  dim: number,
  classes: number
): VelocityNetConfig =>
  req.arch === "unet"
    ? { arch: "unet", dim, side: Math.sqrt(dim), channels: 16, timeFeatures: 64, classes }
    : req.arch === "dit"
    ? { arch: "dit", dim, side: Math.sqrt(dim), patch: 4, width: 64, depth: 4, heads: 4, timeFeatures: 64, classes }
    : { dim, hidden: req.hidden, blocks: req.blocks, timeFeatures: 64, classes }

export interface BaseModel extends ModelFiles {
  readonly net: VelocityNetConfig
  readonly params: ParamValues
  readonly process: Process
  readonly parameterization: Parameterization
  readonly shape: ReadonlyArray<number>
  /** Final smoothed training loss (stored with the cached model). */
  readonly loss: number
  readonly cached: boolean
}

export const processOf = (
  req: Pick<PretrainRequest, "process" | "schedule">
): { process: Process; parameterization: Parameterization } =>
  req.process === "rf"
    ? { process: rectifiedFlow, parameterization: "velocity" }
    : { process: vpDiscrete(req.schedule), parameterization: "epsilon" }

/** The base model's settings: the `pretrain` pipeline's, and the defaults every RL pipeline trains with. */
export const PretrainSettings = {
  dataset: Setting.literal(DATASETS, "mnist", "data set to model"),
  arch: Setting.literal(ARCHS, "mlp", "network: the MLP, or etaflow's U-Net or DiT (MNIST; docs/byom.md)"),
  points: Setting.int(10_000, "points of a 2-D toy data set", { min: 1 }),
  process: Setting.literal(["rf", "vp"], "rf", "rectified flow (velocity) or VP diffusion (ε)"),
  schedule: Setting.literal(VP_SCHEDULES, "scaled-linear", "VP ᾱ schedule, 1,000 training steps (ignored for rf)"),
  hidden: Setting.int(512, "hidden width of the network", { min: 1 }),
  blocks: Setting.int(3, "residual blocks", { min: 0 }),
  steps: Setting.int(0, "optimizer steps (0: the arch's recipe, MLP 4000, U-Net 8000, DiT 8000)", { min: 0 }),
  batch: Setting.int(0, "minibatch size (0: the arch's recipe, MLP 256, U-Net 64, DiT 128)", { min: 0 }),
  lr: Setting.number(2e-3, "peak AdamW learning rate (cosine decay to 0)", { min: 0 }),
  condDrop: Setting.number(0.1, "probability of training on the null condition (enables classifier-free guidance)", {
    min: 0,
    max: 1
  }),
  ema: Setting.number(0.995, "decay of the weights' moving average that becomes the model (0: last iterate)", {
    min: 0,
    max: 1
  }),
  cfg: Setting.number(1, "classifier-free guidance scale of the evaluation samples (1 = none, as the RL pipelines)", {
    min: 0
  }),
  evalSamples: Setting.int(500, "ODE samples drawn to measure the model (the same noise at every step count)", {
    min: 1
  }),
  evalSteps: Setting.intList([1, 2, 4, 8, 10, 16], "ODE step counts of those samples (trailing grid for VP)", {
    min: 1
  }),
  threads: Setting.int(2, "onnxruntime intra-op threads", { min: 1 })
}

/**
 * The base model of a 2-D toy in RL pipelines: a small network trained briefly (its ODE samples lie
 * within ~0.06 of the double ring) instead of the MNIST-sized defaults; MNIST uses those defaults,
 * so `etaflow run pretrain` and the RL pipelines share one cached base.
 */
const TOY_BASE = { hidden: 128, blocks: 2, steps: 800, lr: 3e-3 }
/** gmm25's 25 narrow modes 5 apart at scale 10 need a longer training than the rings (§13.2). */
const GMM25_BASE = { hidden: 256, blocks: 3, steps: 4000, lr: 2e-3 }

/**
 * Each architecture's pretraining budget, where `steps` and `batch` are left at 0: the MLP's recipe of
 * earlier versions; the convolutional and transformer bases take smaller batches (a conv step costs
 * ~20× an MLP step here) and reach the MLP's ODE class accuracy within it (docs/byom.md).
 */
const ARCH_RECIPES: Readonly<Record<Arch, { readonly steps: number; readonly batch: number }>> = {
  mlp: { steps: 4000, batch: 256 },
  unet: { steps: 8000, batch: 64 },
  dit: { steps: 8000, batch: 128 }
}

/** The request with its architecture's recipe filled in. */
const resolved = (config: PretrainRequest): PretrainRequest => ({
  ...config,
  steps: config.steps || ARCH_RECIPES[config.arch].steps,
  batch: config.batch || ARCH_RECIPES[config.arch].batch
})

/** What determines a base's weights: the model cache's key of the `base-model` kind. */
const baseCacheKey = (config: PretrainRequest, net: VelocityNetConfig, seed: number) => {
  const { steps, batch, lr, condDrop, ema, threads } = config
  const schedule = config.process === "vp" ? config.schedule : null
  return {
    dataset: config.dataset,
    process: config.process,
    schedule,
    net,
    steps,
    batch,
    lr,
    condDrop,
    ema,
    threads,
    seed
  }
}

/** The weights of a base already in the model cache (an export of a LoRA run reads its frozen base here). */
export const cachedBaseParams = (config: PretrainRequest, net: VelocityNetConfig, seed: number) =>
  loadCached("base-model", baseCacheKey(resolved(config), net, seed), velocityNet(net).specs)?.params

/** The network, its training recipe and the cache key a pretrain request and the run's seed give. */
const recipeOf = (data: arrow.Table, config: PretrainRequest, seed: number) => {
  const split = splitOf(data, "train")
  const classes = config.dataset === "mnist" ? split.classes : 0
  const net = baseNetOf(config, split.dim, classes)
  const { process, parameterization } = processOf(config)
  const { steps, batch, lr, condDrop, ema, threads } = config
  const training: VelocityTraining = { net, process, trainSteps: 1000, steps, batch, lr, condDrop, ema, threads }
  const key = baseCacheKey(config, net, seed)
  return { split, net, process, parameterization, training, key }
}

/** The base a pretrain request describes: from the model cache, or trained now and cached. */
export const pretrainedBase = (data: arrow.Table, request: PretrainRequest) =>
  Effect.gen(function*() {
    const config = resolved(request)
    const { seed, note } = yield* NodeContext
    const report = NodeContext.throttled(note, config.steps, "pretraining step")
    const rng = yield* Rng
    const { split, net, process, parameterization, training, key } = recipeOf(data, config, seed)
    // MNIST pixels become latents in [−1, 1]; the toys are used as they are.
    const x = config.dataset === "mnist" ? split.x.map(pixelsToLatent) : split.x
    const specs = velocityNet(net).specs
    return yield* Node.promise([GraphError, SessionError, TrainError], async () => {
      const hit = loadCached("base-model", key, specs)
      let loss = Number(hit?.meta.loss ?? Number.NaN)
      const params = hit?.params ??
        (await trainVelocity(
          { x, label: split.label, count: split.count },
          training,
          rng.stream("train"),
          (step, l) => {
            loss = l
            report(step + 1, `loss ${l.toFixed(4)}`)
          }
        ))
      const meta = {
        etaflow_model: "arch" in net ? describeNet(net) : "velocity-mlp",
        process: process.name,
        parameterization
      }
      const onnx = toOnnx(velocityGraph(net), { initializers: params, metadata: meta })
      const weights = weightsFile(params, specs, { kind: "base-model", process: process.name, parameterization })
      if (hit === undefined) {
        storeCached("base-model", key, { weights, onnx }, { loss, net, process: process.name, parameterization })
      }
      const model: BaseModel = {
        net,
        params,
        process,
        parameterization,
        shape: split.shape,
        onnx,
        weights,
        loss,
        cached: hit !== undefined
      }
      return model
    })
  })

/** base (the `pretrain` pipeline's stage): the network its settings describe. */
export const baseModel = Node.make({
  name: "base",
  doc: "the pretrained velocity / ε network of the data set (cached by config and seed)",
  inputs: { data: Port.of<arrow.Table>(), config: Port.of<PretrainRequest>() },
  run: ({ data, config }) => pretrainedBase(data, config),
  exclusive: true,
  metrics: (m) => ({ loss: m.loss })
})

const defaults = defaultsOf(PretrainSettings)

/** The request an RL pipeline trains its base with: the pretrain defaults (a small network for the toys). */
export const rlBaseRequest = (
  dataset: DatasetName,
  process: "rf" | "vp",
  threads: number,
  arch: Arch = "mlp"
): PretrainRequest => ({
  ...defaults,
  ...(dataset === "mnist" ? {} : dataset === "gmm25" ? GMM25_BASE : TOY_BASE),
  dataset,
  process,
  threads,
  arch
})

/** The network of an RL pipeline's base (and so of its policy), from its data set and architecture. */
export const rlBaseNet = (dataset: DatasetName, arch: Arch = "mlp"): VelocityNetConfig =>
  baseNetOf(rlBaseRequest(dataset, "rf", 1, arch), dataset === "mnist" ? 784 : 2, dataset === "mnist" ? 10 : 0)
