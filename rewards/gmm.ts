/**
 * The `gmm25` toy's reward with an exact target (docs/algorithms.md §13.2): r(x) = log q(x) − log p(x),
 * p the 25-mode base (data/toys.ts) and q the 9-mode posterior of GFNOrg/diffusion-finetuning
 * (`energies/posterior_2Dgmm.py`: the means and weights below, covariance 0.3·I). The KL-regularised
 * optimum p(x)·exp(λ r(x)) at λ = 1 is q exactly.
 */
import { GMM25_GRID, GMM25_VARIANCE } from "../data/toys.ts"

/** An isotropic 2-D Gaussian mixture: means (x, y), weights summing to 1, one variance. */
export interface Gmm {
  readonly means: ReadonlyArray<readonly [number, number]>
  readonly weights: ReadonlyArray<number>
  readonly variance: number
}

export const BASE25: Gmm = {
  means: GMM25_GRID.flatMap((a) => GMM25_GRID.map((b) => [a, b] as const)),
  weights: Array.from({ length: 25 }, () => 1 / 25),
  variance: GMM25_VARIANCE
}

const Q_WEIGHTS = [4, 10, 4, 5, 10, 5, 4, 15, 4]

export const POSTERIOR9: Gmm = {
  means: [[-10, -5], [-5, -10], [-5, 0], [10, -5], [0, 0], [0, 5], [5, -5], [5, 0], [5, 10]],
  weights: Q_WEIGHTS.map((w) => w / Q_WEIGHTS.reduce((a, b) => a + b, 0)),
  variance: GMM25_VARIANCE
}

/** log density and score ∇ log density of a mixture at (x, y), by log-sum-exp over its components. */
export const gmmAt = (g: Gmm, x: number, y: number): { logp: number; dx: number; dy: number } => {
  let top = -Infinity
  const logits = g.means.map(([mx, my], k) => {
    const l = Math.log(g.weights[k]) - ((x - mx) ** 2 + (y - my) ** 2) / (2 * g.variance)
    top = Math.max(top, l)
    return l
  })
  let total = 0
  let dx = 0
  let dy = 0
  logits.forEach((l, k) => {
    const w = Math.exp(l - top)
    total += w
    dx += (w * (g.means[k][0] - x)) / g.variance
    dy += (w * (g.means[k][1] - y)) / g.variance
  })
  return { logp: top + Math.log(total) - Math.log(2 * Math.PI * g.variance), dx: dx / total, dy: dy / total }
}

/** r(x) = log q(x) − log p(x) and its gradient at (x, y). */
export const posteriorRatio = (x: number, y: number): { r: number; dx: number; dy: number } => {
  const [q, p] = [gmmAt(POSTERIOR9, x, y), gmmAt(BASE25, x, y)]
  return { r: q.logp - p.logp, dx: q.dx - p.dx, dy: q.dy - p.dy }
}

/**
 * E_q[r] = KL(q ‖ p) by the midpoint rule, component by component of q over its mean ± 3.5 (6.4 standard
 * deviations: the tails left out weigh < 1e-9) at spacing h. Computed once per process.
 */
export const posteriorExpectedReward = (h = 0.02): number => {
  const cached = expected.get(h)
  if (cached !== undefined) return cached
  const sd = Math.sqrt(POSTERIOR9.variance)
  const cells = Math.round(7 / h)
  let total = 0
  POSTERIOR9.means.forEach(([mx, my], k) => {
    let sum = 0
    for (let i = 0; i < cells; i++) {
      const x = mx - 3.5 + (i + 0.5) * h
      for (let j = 0; j < cells; j++) {
        const y = my - 3.5 + (j + 0.5) * h
        const density = Math.exp(-((x - mx) ** 2 + (y - my) ** 2) / (2 * sd * sd)) / (2 * Math.PI * sd * sd)
        sum += density * posteriorRatio(x, y).r
      }
    }
    total += POSTERIOR9.weights[k] * sum * h * h
  })
  expected.set(h, total)
  return total
}
const expected = new Map<number, number>()
