/**
 * Pretraining of the velocity (rectified flow) or ε (VP) network on a data set.
 *  - rf: x_σ = (1 − σ) x0 + σ ε with σ ~ U(0, 1), target v = ε − x0 (flow matching);
 *  - vp: x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε with t ~ U{0..999}, target ε (DDPM).
 * Conditions are dropped to the null class with probability `condDrop`, which teaches the model
 * its unconditional output for classifier-free guidance. AdamW with cosine decay; the returned
 * weights are an exponential moving average of the iterates when `ema` > 0.
 */
import type { Process } from "../diffusion/process.ts"
import * as op from "../engine/ops.ts"
import { initParams, type ParamValues } from "../engine/params.ts"
import { DEFAULT_ADAM } from "../engine/train-step.ts"
import { emaDecay, Trainer } from "../engine/train.ts"
import { velocityNet, type VelocityNetConfig } from "../models/velocity-net.ts"
import type { RandomStream } from "../random/streams.ts"

export interface VelocityTraining {
  readonly net: VelocityNetConfig
  readonly process: Process
  /** Discrete training timesteps for VP (ignored for rf). */
  readonly trainSteps: number
  readonly steps: number
  readonly batch: number
  readonly lr: number
  readonly condDrop: number
  /** Decay of the exponential moving average of the weights that is returned (0: no EMA). */
  readonly ema: number
  readonly threads: number
}

export interface TrainingSet {
  /** Latents, count × dim. */
  readonly x: Float32Array
  /** Class of each example (ignored by unconditional networks). */
  readonly label: Int32Array
  readonly count: number
}

/**
 * One training batch in place: a random training row each, its noise level (logit-normal σ for flows, SD3's
 * choice: more training where the velocity is hardest; a uniform integer timestep for VP), x_t and the target
 * (ε − x0 or ε), and the class (dropped to the null class with probability condDrop).
 */
const drawBatch = (
  data: TrainingSet,
  cfg: VelocityTraining,
  draw: RandomStream,
  out: { x: Float32Array; tIn: Float32Array; target: Float32Array; c: BigInt64Array }
) => {
  const d = cfg.net.dim
  const conditional = cfg.net.classes > 0
  for (let b = 0; b < out.tIn.length; b++) {
    const row = draw.int(data.count)
    let a: number
    let s: number
    if (cfg.process.kind === "rf") {
      s = 1 / (1 + Math.exp(-draw.normal()))
      a = 1 - s
      out.tIn[b] = s
    } else {
      const t = draw.int(cfg.trainSteps)
      a = cfg.process.alpha(t)
      s = cfg.process.sigma(t)
      out.tIn[b] = cfg.process.modelTime(t)
    }
    for (let i = 0; i < d; i++) {
      const x0 = data.x[row * d + i]
      const eps = draw.normal()
      out.x[b * d + i] = a * x0 + s * eps
      out.target[b * d + i] = cfg.process.kind === "rf" ? eps - x0 : eps
    }
    out.c[b] = BigInt(conditional && draw.uniform() >= cfg.condDrop ? data.label[row] : cfg.net.classes)
  }
}

/** ema ← β·ema + (1 − β)·θ (started at θ). */
const emaUpdate = (ema: Record<string, Float32Array>, params: ParamValues, beta: number) => {
  for (const [name, p] of Object.entries(params)) {
    const e = (ema[name] ??= Float32Array.from(p))
    for (let i = 0; i < p.length; i++) e[i] = beta * e[i] + (1 - beta) * p[i]
  }
}

export const trainVelocity = async (
  data: TrainingSet,
  cfg: VelocityTraining,
  rng: RandomStream,
  onProgress?: (step: number, loss: number) => void
): Promise<ParamValues> => {
  const model = velocityNet(cfg.net)
  const d = cfg.net.dim
  const conditional = cfg.net.classes > 0
  const trainer = await Trainer.create({
    name: "velocity-train-step",
    specs: model.specs,
    threads: cfg.threads,
    adam: { ...DEFAULT_ADAM, lr: cfg.lr, maxGradNorm: 1 },
    init: initParams(model.specs, rng.child("init")),
    loss: (g, p) => {
      const x = g.input("x", "float32", ["B", d])
      const t = g.input("t", "float32", ["B"])
      const target = g.input("target", "float32", ["B", d])
      const c = conditional ? g.input("c", "int64", ["B"]) : undefined
      const f = model.forward(g, p, x, t, c)
      return { loss: op.reduceMean(op.square(op.sub(f, target)), [0, 1]) }
    }
  })
  const B = cfg.batch
  const x = new Float32Array(B * d)
  const tIn = new Float32Array(B)
  const target = new Float32Array(B * d)
  const c = new BigInt64Array(B)
  const draw = rng.child("batches")
  let running = 0
  const ema: Record<string, Float32Array> = {}
  for (let step = 0; step < cfg.steps; step++) {
    drawBatch(data, cfg, draw, { x, tIn, target, c })
    const lr = cfg.lr * 0.5 * (1 + Math.cos((Math.PI * step) / cfg.steps))
    const feeds = {
      x: { data: x, dims: [B, d] },
      t: { data: tIn, dims: [B] },
      target: { data: target, dims: [B, d] },
      ...(conditional ? { c: { data: c, dims: [B] } } : {})
    }
    const r = await trainer.step(feeds, lr)
    running = step === 0 ? r.loss : 0.98 * running + 0.02 * r.loss
    if (cfg.ema > 0) emaUpdate(ema, trainer.state.params, emaDecay(step, cfg.ema))
    onProgress?.(step, running)
  }
  const params = cfg.ema > 0 ? ema : trainer.state.params
  await trainer.release()
  return params
}
