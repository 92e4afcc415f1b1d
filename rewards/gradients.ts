/**
 * Reward gradients ∇ₓ r(x) with respect to the latents — the terminal condition of adjoint matching's
 * adjoint, a_K = −λ ∇r(x_K) (docs/algorithms.md §10). For MNIST the chain rule runs through the
 * latent → pixel map p = clip((x + 1)/2, 0, 1), whose derivative is ½ inside and 0 where it clips.
 *  - `classifier`: the reward classifier's ONNX file imported into the engine's graph and
 *    differentiated by autodiff (any ONNX reward whose ops the engine covers works the same way);
 *  - `onnx:<file>`: the reward file imported the same way (input x [B, dim], output reward [B]);
 *  - `ink`, `outer-ring`, `quadratic`: their closed forms.
 * A spec's gradient is the weighted sum of its terms'; a term the engine cannot differentiate is
 * named by `gradientProblems` before a pipeline that needs gradients creates its folder.
 */
import * as fs from "node:fs"
import { grad } from "../engine/autodiff.ts"
import { Graph } from "../engine/graph.ts"
import { importOnnx } from "../engine/onnx-import.ts"
import * as op from "../engine/ops.ts"
import { EngineSession, ownedSession } from "../engine/session.ts"
import { posteriorRatio } from "./gmm.ts"
import { parseRewardSpec, type RewardContext, RewardSpecError } from "./rewards.ts"
import { classifierLogProbs, targetWeights } from "./target.ts"

export interface RewardGradient {
  readonly name: string
  /** ∇ₓ r at each sample, count × dim (float32, like the latents). */
  readonly gradient: (ctx: RewardContext) => Promise<Float32Array>
}

/** d pixel / d latent: ½ where the map does not clip (MNIST), 1 for the toys' points. */
const pixelSlope = (ctx: RewardContext, x: number) => (ctx.dataset !== "mnist" ? 1 : x > -1 && x < 1 ? 0.5 : 0)

const perSample = (name: string, f: (ctx: RewardContext, i: number, out: Float32Array) => void): RewardGradient => ({
  name,
  gradient: async (ctx) => {
    const out = new Float32Array(ctx.count * ctx.dim)
    for (let i = 0; i < ctx.count; i++) f(ctx, i, out)
    return out
  }
})

/** ink = mean pixel: ∂/∂x_k = (1/d) · dp/dx. */
export const inkGradient = perSample("ink", (ctx, i, out) => {
  for (let k = 0; k < ctx.dim; k++) out[i * ctx.dim + k] = pixelSlope(ctx, ctx.samples[i * ctx.dim + k]) / ctx.dim
})

/** −(‖x‖ − 2)²: −2(‖x‖ − 2) x/‖x‖ (0 at the origin, where the norm has no gradient). */
export const outerRingGradient = perSample("outer-ring", (ctx, i, out) => {
  const [x, y] = [ctx.samples[2 * i], ctx.samples[2 * i + 1]]
  const r = Math.hypot(x, y)
  const c = r === 0 ? 0 : (-2 * (r - 2)) / r
  out[2 * i] = c * x
  out[2 * i + 1] = c * y
})

/** gmm25's log q − log p: the difference of the two mixtures' scores. */
export const gmmPosteriorGradient = perSample("gmm-posterior", (ctx, i, out) => {
  const g = posteriorRatio(ctx.samples[2 * i], ctx.samples[2 * i + 1])
  out[2 * i] = g.dx
  out[2 * i + 1] = g.dy
})
/** −‖x‖²/2: −x. */
export const quadraticGradient = perSample("quadratic", (ctx, i, out) => {
  for (let k = 0; k < ctx.dim; k++) out[i * ctx.dim + k] = -ctx.samples[i * ctx.dim + k]
})

/**
 * The classifier reward log p(prompted digit | pixels(x)) and its gradient from the classifier's
 * ONNX bytes (input x, output logp [B, classes]): one session returns both. With `target` digits T,
 * the gradient of the tilt reward log p(T | pixels(x)) instead.
 */
export const classifierGradient = async (
  onnx: Uint8Array,
  dim: number,
  classes: number,
  threads: number,
  target?: ReadonlyArray<number>
): Promise<RewardGradient & { readonly release: () => Promise<void> }> => {
  // The classifier is frozen: its gradient session is built once per classifier and kept.
  const session = await ownedSession(onnx, `classifier-gradient|${dim}|${classes}|${threads}`, () => {
    const g = new Graph("classifier-gradient")
    const x = g.input("x", "float32", ["B", dim])
    const onehot = g.input("onehot", "float32", ["B", classes])
    const pixels = op.clip(op.mul(op.add(x, 1), 0.5), 0, 1)
    const { logp } = importOnnx(g, onnx, { x: pixels }, "reward classifier")
    const reward = op.reduceSum(op.mul(logp, onehot), [1])
    // Rewards of different samples are independent, so the gradient of their sum is each one's gradient.
    const [dx] = grad(op.reduceSum(reward, [0]), [x])
    g.output("reward", reward)
    g.output("gradient", dx!)
    return EngineSession.create(g, { threads })
  })
  const weighted = async (ctx: RewardContext, weights: Float32Array) => {
    const out = await session.run({
      x: { data: ctx.samples, dims: [ctx.count, dim] },
      onehot: { data: weights, dims: [ctx.count, classes] }
    })
    return out.gradient.data as Float32Array
  }
  if (target !== undefined) {
    // ∇ log p(T | x) = Σ_{c∈T} w_c ∇ log p(c | x), w = p(c | x)/p(T | x) from a forward pass (rewards/target.ts).
    const logpSession = await ownedSession(onnx, `classifier-logp|${dim}|${classes}|${threads}`, () => {
      const g = new Graph("classifier-logp")
      const x = g.input("x", "float32", ["B", dim])
      const { logp } = importOnnx(g, onnx, { x: rewardInput(x, "mnist") }, "reward classifier")
      g.output("logp", logp)
      return EngineSession.create(g, { threads })
    })
    return {
      name: "target",
      gradient: async (ctx) => {
        const logp = await classifierLogProbs(logpSession, ctx.samples, ctx.count, dim)
        return weighted(ctx, targetWeights(logp, ctx.count, classes, target))
      },
      release: () => Promise.resolve()
    }
  }
  return {
    name: "classifier",
    gradient: async (ctx) => {
      const hot = new Float32Array(ctx.count * classes)
      for (let i = 0; i < ctx.count; i++) hot[i * classes + ctx.condition[i]] = 1
      return weighted(ctx, hot)
    },
    release: () => Promise.resolve()
  }
}

/** The pixel map of MNIST latents (clip((x + 1)/2, 0, 1)); the toys' points are their own input. */
const rewardInput = (x: ReturnType<Graph["input"]>, dataset: string) =>
  dataset === "mnist" ? op.clip(op.mul(op.add(x, 1), 0.5), 0, 1) : x

/** An ONNX reward file (the `onnx:<file>` contract: x [B, dim] → reward [B]) imported and differentiated. */
export const onnxRewardGradient = async (
  file: string,
  dataset: string,
  dim: number,
  threads: number
): Promise<RewardGradient & { readonly release: () => Promise<void> }> => {
  const g = new Graph("onnx-reward-gradient")
  const x = g.input("x", "float32", ["B", dim])
  const { reward } = importOnnx(g, new Uint8Array(fs.readFileSync(file)), { x: rewardInput(x, dataset) }, file)
  const [dx] = grad(op.reduceSum(reward, [0]), [x])
  g.output("gradient", dx!)
  const session = await EngineSession.create(g, { threads })
  return {
    name: `onnx:${file}`,
    gradient: async (ctx) =>
      (await session.run({ x: { data: ctx.samples, dims: [ctx.count, dim] } })).gradient.data as Float32Array,
    release: () => session.release()
  }
}

/**
 * Why a reward spec has no gradient, per term: ONNX files with an op the engine cannot import (the
 * message names the op and node). Unknown names and missing files are the reward check's to report.
 */
export const gradientProblems = (spec: string, dataset: string, dim: number): Array<string> =>
  parseRewardSpec(spec, dataset).flatMap((term) => {
    if (!term.name.startsWith("onnx:")) return []
    const file = term.name.slice(5)
    if (!fs.existsSync(file)) return []
    try {
      const g = new Graph("gradient-check")
      importOnnx(g, new Uint8Array(fs.readFileSync(file)), { x: g.input("x", "float32", ["B", dim]) }, file)
      return []
    } catch (e) {
      return [`setting "reward": ${term.name} has no gradient for adjoint matching: ${(e as Error).message}`]
    }
  })

/** total += weight · g, in a function of its own so the engine optimises the loop (no heap numbers). */
const addScaled = (total: Float32Array, weight: number, g: Float32Array) => {
  for (let i = 0; i < total.length; i++) total[i] += weight * g[i]
}

/**
 * ∇ₓ of a weighted reward spec (`classifier:1,ink:0.2`); the classifier term needs the reward
 * classifier's ONNX bytes.
 */
export const rewardGradient = async (opts: {
  readonly spec: string
  readonly dataset: string
  readonly dim: number
  readonly classifier?: { readonly onnx: Uint8Array; readonly classes: number }
  /** The tilt task's target digits (the `target` term, and `proxy` on tilt). */
  readonly target: ReadonlyArray<number>
  readonly tilt: boolean
  readonly threads: number
}): Promise<RewardGradient & { readonly release: () => Promise<void> }> => {
  const terms = await Promise.all(
    parseRewardSpec(opts.spec, opts.dataset).map(async (term) => {
      const closed = {
        ink: inkGradient,
        "outer-ring": outerRingGradient,
        quadratic: quadraticGradient,
        "gmm-posterior": gmmPosteriorGradient
      }[term.name]
      if (closed !== undefined) return { gradient: closed, weight: term.weight, release: async () => {} }
      if (term.name === "classifier" || term.name === "target" || term.name === "proxy") {
        if (opts.classifier === undefined) {
          throw new RewardSpecError({
            reward: term.name,
            message: `the ${term.name} reward needs the reward classifier`
          })
        }
        // The proxy scores the task's own reward: T's on tilt, the prompted digit's otherwise.
        const target = term.name === "target" || (term.name === "proxy" && opts.tilt) ? opts.target : undefined
        const { onnx, classes } = opts.classifier
        const c = await classifierGradient(onnx, opts.dim, classes, opts.threads, target)
        return { gradient: c, weight: term.weight, release: c.release }
      }
      const o = await onnxRewardGradient(term.name.slice(5), opts.dataset, opts.dim, opts.threads)
      return { gradient: o, weight: term.weight, release: o.release }
    })
  )
  return {
    name: opts.spec,
    gradient: async (ctx) => {
      const total = new Float32Array(ctx.count * ctx.dim)
      for (const { gradient, weight } of terms) addScaled(total, weight, await gradient.gradient(ctx))
      return total
    },
    release: async () => {
      for (const t of terms) await t.release()
    }
  }
}
