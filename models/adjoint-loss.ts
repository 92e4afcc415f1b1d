/**
 * The adjoint-matching loss (Domingo-Enrich et al., arXiv 2409.08861; official code
 * microsoft/soc-fine-tuning-sd `src/trainers/am_trainer.py`), docs/algorithms.md §10: per selected
 * (trajectory, step) row, with μ = a·x + b·f(x, t, c) the step's noiseless mean,
 *
 *   ℓ = Σ_i ((μ_ft − μ_base)_i / s + a_i · s)²
 *
 * (= Δt‖u + σ a‖² in the continuous form), μ_ft from the trained network, μ_base and the adjoint a
 * given per row (computed with the frozen base before the update). Rows whose √ℓ reaches the
 * clipping threshold (an EMA of the 90th percentile of √ℓ, `LossClip`) get weight 0, as the
 * reference drops them. The loss is Σ_rows w_row ℓ_row with w the kept rows' 1/count.
 */
import type { Graph } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import type { LossBuilder } from "../engine/train.ts"
import type { RandomStream } from "../random/streams.ts"
import { velocityNet, type VelocityNetConfig } from "./networks.ts"

const rowInputs = (g: Graph, d: number, conditional: boolean) => ({
  x: g.input("x", "float32", ["M", d]),
  t: g.input("t", "float32", ["M"]),
  c: conditional ? g.input("c", "int64", ["M"]) : undefined,
  muBase: g.input("mu_base", "float32", ["M", d]),
  adjoint: g.input("adjoint", "float32", ["M", d]),
  a: g.input("a", "float32", ["M"]),
  b: g.input("b", "float32", ["M"]),
  s: g.input("s", "float32", ["M"]),
  w: g.input("w", "float32", ["M"]),
  /** Rows with √ℓ ≥ threshold are dropped (Infinity-like 3.4e38: none). */
  threshold: g.input("threshold", "float32", [])
})

/**
 * `residual`: the trained network is a control g_θ added to a frozen base, f_ft = f_base + g_θ, so
 * μ_ft = μ_base + b·g_θ (a small control on an analytic base, the toys' exact tests); otherwise the
 * trained network is the whole fine-tuned model (initialised from the base's weights).
 */
export const adjointMatchingLoss =
  (net: VelocityNetConfig, opts: { readonly residual?: boolean } = {}): LossBuilder => (g, p) => {
    const rows = rowInputs(g, net.dim, net.classes > 0)
    const f = velocityNet(net).forward(g, p, rows.x, rows.t, rows.c)
    const col = (v: typeof rows.a) => op.unsqueeze(v, [1])
    const mu = opts.residual === true
      ? op.add(rows.muBase, op.mul(f, col(rows.b)))
      : op.add(op.mul(rows.x, col(rows.a)), op.mul(f, col(rows.b)))
    const control = op.div(op.sub(mu, rows.muBase), col(rows.s))
    const residual = op.add(control, op.mul(rows.adjoint, col(rows.s)))
    const perRow = op.reduceSum(op.square(residual), [1])
    const kept = op.cast(op.lessOrEqual(op.sqrt(perRow), rows.threshold), "float32")
    return {
      loss: op.reduceSum(op.mul(op.mul(perRow, rows.w), kept), [0]),
      extra: { row_loss: perRow, control_sq: op.reduceSum(op.square(control), [1]) }
    }
  }

/**
 * The time indices one trajectory trains (am_trainer.py `sample_time_indices`): `early` of the first
 * round(split·N) steps and `late` of the rest, without replacement, sorted.
 */
export const sampleTimeIndices = (
  steps: number,
  stream: RandomStream,
  opts: { readonly early: number; readonly late: number; readonly split: number } = { early: 2, late: 2, split: 0.6 }
): Array<number> => {
  const cut = Math.round(opts.split * steps)
  const pick = (lo: number, hi: number, n: number) => {
    const pool = Array.from({ length: hi - lo }, (_, i) => lo + i)
    for (let i = 0; i < Math.min(n, pool.length); i++) {
      const j = i + stream.int(pool.length - i)
      ;[pool[i], pool[j]] = [pool[j], pool[i]]
    }
    return pool.slice(0, Math.min(n, pool.length))
  }
  return [...pick(0, cut, opts.early), ...pick(cut, steps, opts.late)].sort((x, y) => x - y)
}

/**
 * Per-row loss clipping: keep a row while √ℓ < the threshold, an EMA (decay 0.9) of each batch's 90th
 * percentile of √ℓ, warmed up as a running average over the first 1/(1 − decay) batches. One graph runs
 * forward and backward, so a batch is clipped against the threshold before it; the first is not clipped.
 */
export interface LossClipState {
  readonly value: number
  readonly batches: number
}

export class LossClip {
  private value = Number.POSITIVE_INFINITY
  private batches = 0

  constructor(readonly decay = 0.9, readonly quantile = 0.9, state?: LossClipState) {
    if (state !== undefined) [this.value, this.batches] = [state.value, state.batches]
  }

  get threshold(): number {
    return this.value
  }

  /** What a checkpoint keeps, so a resumed run clips against the same threshold. */
  get state(): LossClipState {
    return { value: this.value, batches: this.batches }
  }

  /** Folds in a batch's per-row losses ℓ (not √ℓ). */
  observe(rowLosses: ArrayLike<number>): void {
    const roots = Array.from(rowLosses, (l) => Math.sqrt(l)).sort((x, y) => x - y)
    const q = roots[Math.min(roots.length - 1, Math.floor(this.quantile * roots.length))]
    this.batches++
    const beta = Math.min(this.decay, 1 - 1 / this.batches)
    this.value = this.batches === 1 ? q : beta * this.value + (1 - beta) * q
  }
}
