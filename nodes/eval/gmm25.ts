/**
 * What an evaluation on the `gmm25` toy measures beside the reward (docs/algorithms.md §13.2): each of
 * q's 9 modes' share of the samples (a sample belongs to a mode within 3σ of its mean), how many modes
 * are covered (≥ 1 % of the samples), the mass outside every mode of q, the target's reward E_q[r], and
 * a KL estimate to q over those 10 cells with its standard error.
 */
import { POSTERIOR9, posteriorExpectedReward } from "../../rewards/gmm.ts"

/** A 2-D Gaussian puts 1 − e^{−9/2} of its mass within 3σ of its mean. */
const WITHIN_3_SIGMA = 1 - Math.exp(-4.5)
const COVERED = 0.01

/** The q mode each sample lies within 3σ of (−1: none). q's modes are ≥ 5 apart, so at most one. */
const modeOf = (x: number, y: number): number => {
  const r2 = 9 * POSTERIOR9.variance
  return POSTERIOR9.means.findIndex(([mx, my]) => (x - mx) ** 2 + (y - my) ** 2 <= r2)
}

/**
 * KL(p̂ ‖ q̄) over the 9 modes and "outside", q̄ the share of q in each cell, with its delta-method s.e.
 * A coarse-graining: by the data-processing inequality it bounds the samples' KL to q from below.
 */
export const cellKl = (counts: ReadonlyArray<number>, outside: number, n: number) => {
  const cells = [...counts.map((c, k) => ({ p: c / n, q: POSTERIOR9.weights[k] * WITHIN_3_SIGMA })), {
    p: outside / n,
    q: 1 - WITHIN_3_SIGMA
  }]
  const terms = cells.filter((c) => c.p > 0).map((c) => ({ p: c.p, l: Math.log(c.p / c.q) }))
  const kl = terms.reduce((a, t) => a + t.p * t.l, 0)
  const second = terms.reduce((a, t) => a + t.p * t.l * t.l, 0)
  return { kl, se: Math.sqrt(Math.max(second - kl * kl, 0) / n) }
}

/** The gmm25 metrics of the tuned and base ODE samples (points, count × 2) at one step count. */
export const gmm25Metrics = (
  steps: number,
  samples: { readonly tuned: Float32Array; readonly base: Float32Array },
  count: number,
  improvement: { readonly mean: number; readonly se: number },
  baseReward: number
): Record<string, number> => {
  const target = posteriorExpectedReward()
  const span = target - baseReward
  const metrics: Record<string, number> = {
    "eval.target_reward": target,
    [`eval.normalised.s${steps}`]: improvement.mean / span,
    [`eval.normalised.s${steps}.se`]: improvement.se / Math.abs(span)
  }
  for (const [suffix, x] of [["", samples.tuned], ["_base", samples.base]] as const) {
    const counts = new Array<number>(POSTERIOR9.means.length).fill(0)
    let outside = 0
    for (let i = 0; i < count; i++) {
      const k = modeOf(x[2 * i], x[2 * i + 1])
      if (k < 0) outside++
      else counts[k]++
    }
    counts.forEach((c, k) => (metrics[`eval.mode_weight${suffix}.q${k}.s${steps}`] = c / count))
    metrics[`eval.modes_covered${suffix}.s${steps}`] = counts.filter((c) => c / count >= COVERED).length
    metrics[`eval.outside_mass${suffix}.s${steps}`] = outside / count
    const { kl, se } = cellKl(counts, outside, count)
    metrics[`eval.kl_q${suffix}.s${steps}`] = kl
    metrics[`eval.kl_q${suffix}.s${steps}.se`] = se
  }
  return metrics
}
