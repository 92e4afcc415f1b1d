/**
 * Reward models: terminal rewards of final samples, weighted by a spec such as
 * `classifier:1,ink:0.2`. Built-ins: for MNIST `classifier` (log-probability of the prompted digit
 * under the reward classifier, run through onnxruntime-node), `target` (log p(T | x) of the `target`
 * digits T, rewards/target.ts), `proxy` (the task's classifier reward — prompted digit or T — scored by a
 * deliberately weak classifier, for over-optimisation studies) and `ink` (mean intensity); for the
 * 2-D toys `outer-ring` (−(‖x‖ − 2)², highest on the outer ring), `quadratic` (−‖x‖²/2, §3.5) and
 * `gmm-posterior` (gmm25's log q(x) − log p(x), rewards/gmm.ts, §13.2).
 * `onnx:<file>` is any ONNX model with input x [B, dim] float32 (pixels in [0, 1] for MNIST,
 * points for toys) and output reward [B] float32.
 */
import { Data } from "effect"
import { latentsToPixels } from "../data/mnist.ts"
import type { EngineSession } from "../engine/session.ts"
import { loadOnnxModel, type OnnxContract } from "../models/external.ts"
import { posteriorRatio } from "./gmm.ts"

export interface RewardContext {
  readonly dataset: string
  /** Final latents, count × dim. */
  readonly samples: Float32Array
  readonly count: number
  readonly dim: number
  /** Condition per sample (class index; −1 unconditional). */
  readonly condition: Int32Array
}

export interface RewardModel {
  readonly name: string
  readonly score: (ctx: RewardContext) => Promise<Float64Array>
}

export interface RewardTerm {
  readonly name: string
  readonly weight: number
}

/** A reward spec names no reward this data set has (it names the reward). */
export class RewardSpecError
  extends Data.TaggedError("RewardSpecError")<{ readonly reward: string; readonly message: string }>
{}

const MNIST_REWARDS = ["classifier", "target", "proxy", "ink"]
const TOY_REWARDS = ["outer-ring", "quadratic", "gmm-posterior"]

/** The terms of `name[:weight],…` as written (the weight is what follows the last colon when it is a number). */
export const rewardTerms = (spec: string): Array<RewardTerm> =>
  spec.split(",").map((part) => {
    const trimmed = part.trim()
    // "onnx:m.onnx" has no weight: its suffix is not a number.
    const at = trimmed.lastIndexOf(":")
    const suffix = at > 0 ? trimmed.slice(at + 1) : ""
    const hasWeight = suffix !== "" && Number.isFinite(Number(suffix))
    return { name: hasWeight ? trimmed.slice(0, at) : trimmed, weight: hasWeight ? Number(suffix) : 1 }
  })

/** Parses `name[:weight],…`; unknown names fail listing what the data set offers. */
export const parseRewardSpec = (spec: string, dataset: string): Array<RewardTerm> => {
  const allowed = dataset === "mnist" ? MNIST_REWARDS : TOY_REWARDS
  return rewardTerms(spec).map(({ name, weight }) => {
    if (!name.startsWith("onnx:") && !allowed.includes(name)) {
      throw new RewardSpecError({
        reward: name,
        message: `reward "${name}" is not available for ${dataset}; use one of ${
          allowed.join(", ")
        } or onnx:<file.onnx>`
      })
    }
    return { name, weight }
  })
}

const pixels = (ctx: RewardContext) => (ctx.dataset === "mnist" ? latentsToPixels(ctx.samples) : ctx.samples)

/** The classifier reward: log p(prompted digit | image). */
export const classifierReward = (session: EngineSession, classes: number): RewardModel => ({
  name: "classifier",
  score: async (ctx) => {
    const out = await session.run({ x: { data: pixels(ctx), dims: [ctx.count, ctx.dim] } })
    const logp = out.logp.data as Float32Array
    return Float64Array.from({ length: ctx.count }, (_, i) => logp[i * classes + ctx.condition[i]])
  }
})

const perSample = (name: string, f: (x: Float32Array, i: number, dim: number) => number): RewardModel => ({
  name,
  score: async (ctx) => {
    const x = pixels(ctx)
    return Float64Array.from({ length: ctx.count }, (_, i) => f(x, i, ctx.dim))
  }
})

export const inkReward = perSample("ink", (x, i, d) => {
  let s = 0
  for (let k = 0; k < d; k++) s += x[i * d + k]
  return s / d
})
export const outerRingReward = perSample("outer-ring", (x, i) => -((Math.hypot(x[2 * i], x[2 * i + 1]) - 2) ** 2))
export const gmmPosteriorReward = perSample("gmm-posterior", (x, i) => posteriorRatio(x[2 * i], x[2 * i + 1]).r)
export const quadraticReward = perSample("quadratic", (x, i, d) => {
  let s = 0
  for (let k = 0; k < d; k++) s += x[i * d + k] ** 2
  return -s / 2
})

/** What an ONNX reward must take and give: pixels (MNIST, in [0, 1]) or points, one reward each. */
export const rewardContract = (dim: number): OnnxContract => ({
  inputs: { x: { dtype: "float32", shape: ["batch", dim] } },
  outputs: { reward: { dtype: "float32", shape: ["batch"] } }
})

export const onnxReward = async (file: string, dim: number, threads: number): Promise<RewardModel> => {
  const session = await loadOnnxModel(file, rewardContract(dim), threads)
  return {
    name: `onnx:${file}`,
    score: async (ctx) =>
      Float64Array.from(
        (await session.run({ x: { data: pixels(ctx), dims: [ctx.count, ctx.dim] } })).reward.data as Float32Array
      )
  }
}
