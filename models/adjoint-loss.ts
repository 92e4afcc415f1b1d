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
 * reference's mask drops them. The loss is Σ_rows w_row ℓ_row with w = 1/rows (the update's feeds):
 * a dropped row counts as 0 in the mean, as in the reference's `torch.mean(loss_evals * mask)`.
 */
import { Graph } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import { paramInputs } from "../engine/params.ts"
import { cachedSession } from "../engine/session-cache.ts"
import { EngineSession } from "../engine/session.ts"
import type { LossBuilder } from "../engine/train-step.ts"
import type { RandomStream } from "../random/streams.ts"
import { velocityNet, type VelocityNetConfig } from "./velocity-net.ts"

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
    // Kept while √ℓ < threshold, strictly, as the reference's mask.
    const kept = op.cast(op.less(op.sqrt(perRow), rows.threshold), "float32")
    return {
      loss: op.reduceSum(op.mul(op.mul(perRow, rows.w), kept), [0]),
      extra: { row_loss: perRow, control_sq: op.reduceSum(op.square(control), [1]) }
    }
  }

/**
 * A forward-only session of the loss graph returning each row's ℓ (`row_loss`) at parameters fed as `p.*`:
 * what the loss clip's EMA takes in before the step that masks with it. Cached per network for the process.
 */
export const rowLossSession = (net: VelocityNetConfig, opts: { readonly residual?: boolean }, threads: number) =>
  cachedSession(`adjoint-row-loss|${JSON.stringify(net)}|${opts.residual === true}|${threads}`, () => {
    const g = new Graph("adjoint-row-loss")
    const out = adjointMatchingLoss(net, opts)(g, paramInputs(g, velocityNet(net).specs, "p."))
    g.output("row_loss", out.extra!.row_loss)
    return EngineSession.create(g, { threads })
  })

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
 * Per-row loss clipping, as am_trainer.py (soc-fine-tuning-sd `compute_loss`, `EMA_update`): a row is kept
 * while √ℓ < the threshold (strictly), an EMA (decay 0.9) of each batch's 90th percentile of √ℓ, the
 * percentile interpolated between order statistics as `torch.quantile` does. The EMA's warm-up is the
 * reference's: the first value as it is, a running mean while the update count is below 1/decay (with
 * 0.9, only the second value, averaged ½–½), then 0.1 of each new value.
 * As there, the current batch's quantile enters the EMA before the batch is masked: its row losses come
 * from a forward-only pass (`rowLossSession`) ahead of the train step.
 */
export interface LossClipState {
  readonly value: number
  readonly batches: number
}

/** The q-quantile of `values` with linear interpolation between order statistics (torch.quantile's default). */
export const interpolatedQuantile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = [...values].sort((x, y) => x - y)
  const at = q * (sorted.length - 1)
  const lo = Math.floor(at)
  const hi = Math.min(sorted.length - 1, lo + 1)
  return sorted[lo] + (at - lo) * (sorted[hi] - sorted[lo])
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

  /** Whether a row of loss ℓ is kept: √ℓ strictly below the threshold. */
  keeps(rowLoss: number): boolean {
    return Math.sqrt(rowLoss) < this.value
  }

  /** Folds in a batch's per-row losses ℓ (not √ℓ): `EMA_update` of their √ℓ's quantile. */
  observe(rowLosses: ArrayLike<number>): void {
    const q = interpolatedQuantile(Array.from(rowLosses, (l) => Math.sqrt(l)), this.quantile)
    const n = this.batches
    this.value = n === 0 ? q : n < 1 / this.decay ? q / (n + 1) + (1 - 1 / (n + 1)) * this.value : this.decay *
        this.value + (1 - this.decay) * q
    this.batches = n + 1
  }
}
