/**
 * baseModel: the pretrained velocity (rectified flow) or ε (VP) network of a data set — from the
 * model cache when one was trained with the same config and seed, else trained now and cached.
 * RL pipelines start from it.
 */
import { Effect } from "effect"
import type * as arrow from "apache-arrow"
import { Node, Port } from "../kernel/node.ts"
import { NodeContext, Rng } from "../kernel/services.ts"
import { splitOf } from "../data/split.ts"
import { pixelsToLatent } from "../data/mnist.ts"
import { velocityNet, type VelocityNetConfig } from "../models/networks.ts"
import { trainVelocity, type VelocityTraining } from "../models/train-velocity.ts"
import { loadCached, storeCached, weightsFile } from "../models/cache.ts"
import { toOnnx } from "../engine/onnx.ts"
import { velocityGraph } from "../models/network-policy.ts"
import { rectifiedFlow, vpDiscrete, type Parameterization, type Process, type VpSchedule } from "../diffusion/process.ts"
import type { ParamValues } from "../engine/params.ts"
import type { ModelFiles } from "./model-files.ts"

/** The base model's training settings, with the network and process given by name and size. */
export type PretrainRequest = Omit<VelocityTraining, "net" | "process" | "trainSteps"> & {
  readonly dataset: string
  readonly process: "rf" | "vp"
  readonly schedule: VpSchedule
  readonly hidden: number
  readonly blocks: number
}

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

export const processOf = (req: Pick<PretrainRequest, "process" | "schedule">): { process: Process; parameterization: Parameterization } =>
  req.process === "rf" ? { process: rectifiedFlow, parameterization: "velocity" } : { process: vpDiscrete(req.schedule), parameterization: "epsilon" }

export const baseModel = Node.make({
  name: "baseModel",
  doc: "the pretrained velocity / ε network of the data set (cached by config and seed)",
  inputs: { data: Port.of<arrow.Table>(), config: Port.of<PretrainRequest>() },
  run: ({ data, config }) =>
    Effect.gen(function*() {
      const { seed } = yield* NodeContext
      const rng = yield* Rng
      const train = splitOf(data, "train")
      // MNIST pixels become latents in [−1, 1]; the toys are used as they are.
      const x = config.dataset === "mnist" ? train.x.map(pixelsToLatent) : train.x
      const net: VelocityNetConfig = { dim: train.dim, hidden: config.hidden, blocks: config.blocks, timeFeatures: 64, classes: config.dataset === "mnist" ? train.classes : 0 }
      const { process, parameterization } = processOf(config)
      const training: VelocityTraining = { net, process, trainSteps: 1000, steps: config.steps, batch: config.batch, lr: config.lr, condDrop: config.condDrop, ema: config.ema, threads: config.threads }
      const key = { dataset: config.dataset, process: config.process, schedule: config.process === "vp" ? config.schedule : null, net, steps: config.steps, batch: config.batch, lr: config.lr, condDrop: config.condDrop, ema: config.ema, threads: config.threads, seed }
      const specs = velocityNet(net).specs
      return yield* Effect.tryPromise({
        try: async () => {
          const hit = loadCached("base-model", key, specs)
          let loss = Number(hit?.meta.loss ?? Number.NaN)
          const params = hit?.params ?? (await trainVelocity({ x, label: train.label, count: train.count }, training, rng.stream("train"), (_, l) => (loss = l)))
          const onnx = toOnnx(velocityGraph(net), { initializers: params, metadata: { etaflow_model: "velocity-mlp", process: process.name, parameterization } })
          const weights = weightsFile(params, specs, { kind: "base-model", process: process.name, parameterization })
          if (hit === undefined) storeCached("base-model", key, { weights, onnx }, { loss, net, process: process.name, parameterization })
          return { net, params, process, parameterization, shape: train.shape, onnx, weights, loss, cached: hit !== undefined } satisfies BaseModel
        },
        catch: (e) => e
      })
    }),
  metrics: (m) => ({ loss: m.loss })
})
