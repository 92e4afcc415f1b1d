/**
 * The train step's graph: the loss a LossBuilder declares, its gradients by reverse-mode autodiff, their
 * norm and clipping, and (the "graph" update) AdamW in the same graph — weights, moments and the step's
 * scalars as inputs, their next values as outputs (engine/train.ts runs it; its header has AdamW's formulas).
 */
import { Data } from "effect"
import { grad } from "./autodiff.ts"
import { Graph, type Tensor } from "./graph.ts"
import * as op from "./ops.ts"
import { paramInputs, type ParamSpec } from "./params.ts"

export interface AdamConfig {
  readonly lr: number
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  /** Gradient-norm clipping threshold (Infinity: no clipping). */
  readonly maxGradNorm: number
}

export const DEFAULT_ADAM: AdamConfig = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 1
}

export type UpdateSide = "graph" | "js"

/**
 * Builds the loss on graph `g` from the parameter tensors; batch inputs are declared inside.
 * `metrics` are scalars; `extra` are any other tensors the caller wants back (e.g. per-row ratios).
 */
export type LossBuilder = (g: Graph, params: Record<string, Tensor>) => {
  readonly loss: Tensor
  readonly metrics?: Readonly<Record<string, Tensor>>
  readonly extra?: Readonly<Record<string, Tensor>>
}

/** A train step cannot be built or went non-finite (it names the model). */
export class TrainError extends Data.TaggedError("TrainError")<{ readonly model: string; readonly message: string }> {}

export const buildTrainStep = (
  name: string,
  specs: ReadonlyArray<ParamSpec>,
  lossFn: LossBuilder,
  adam: AdamConfig,
  update: UpdateSide
): Graph => {
  const g = new Graph(name)
  const p = paramInputs(g, specs, "p.")
  const { loss, metrics, extra } = lossFn(g, p)
  const grads = grad(loss, specs.map((s) => p[s.name]))
  const gs = grads.map((gr, i) => {
    if (gr === undefined) {
      throw new TrainError({ model: name, message: `${name}: parameter ${specs[i].name} does not influence the loss` })
    }
    return gr
  })
  const squares = gs.map((gr) => op.square(gr))
  const norm = op.sqrt(squares.map((sq) => op.reduceSum(sq, sq.shape.map((_, i) => i))).reduce((a, b) => op.add(a, b)))
  g.output("loss", loss)
  g.output("grad_norm", norm)
  for (const [k, v] of Object.entries(metrics ?? {})) g.output(`metric.${k}`, v)
  for (const [k, v] of Object.entries(extra ?? {})) g.output(`extra.${k}`, v)
  if (update === "js") {
    gs.forEach((gr, i) => g.output(`grad.${specs[i].name}`, gr))
    return g
  }
  const stepSize = g.input("adam.step_size", "float32", [])
  const epsHat = g.input("adam.eps_hat", "float32", [])
  const decay = g.input("adam.decay", "float32", [])
  const maxNorm = g.input("adam.max_norm", "float32", [])
  const coef = op.min(op.div(maxNorm, op.add(norm, 1e-6)), 1)
  // The clip coefficient is folded into scalar factors, and g² is shared with the norm: every
  // elementwise pass over the weights costs as much as a small batch's matrix products.
  const mScale = op.mul(coef, 1 - adam.beta1)
  const vScale = op.mul(op.square(coef), 1 - adam.beta2)
  specs.forEach((s, i) => {
    const m = g.input(`m.${s.name}`, "float32", s.shape)
    const v = g.input(`v.${s.name}`, "float32", s.shape)
    const m2 = op.add(op.mul(m, adam.beta1), op.mul(gs[i], mScale))
    const v2 = op.add(op.mul(v, adam.beta2), op.mul(squares[i], vScale))
    const decayed = adam.weightDecay === 0 ? p[s.name] : op.sub(p[s.name], op.mul(p[s.name], decay))
    const p2 = op.sub(decayed, op.mul(op.div(m2, op.add(op.sqrt(v2), epsHat)), stepSize))
    g.output(`next.p.${s.name}`, p2)
    g.output(`next.m.${s.name}`, m2)
    g.output(`next.v.${s.name}`, v2)
  })
  return g
}
