/** gmm25's exact target (§13.2): the posterior ratio's densities, E_q[r] and the cell KL, independently checked. */
import { describe, expect, it } from "vitest"
import { sampleToy } from "../../data/toys.ts"
import { cellKl } from "../../nodes/eval/gmm25.ts"
import { openStream } from "../../random/streams.ts"
import { BASE25, gmmAt, POSTERIOR9, posteriorExpectedReward, posteriorRatio } from "../../rewards/gmm.ts"

describe("gmm25's reward log q − log p", () => {
  it("uses normalised densities: each integrates to 1 on a grid (midpoint rule, spacing 0.05)", () => {
    for (const g of [BASE25, POSTERIOR9]) {
      let total = 0
      for (let x = -14; x < 14; x += 0.05) {
        for (let y = -14; y < 14; y += 0.05) total += Math.exp(gmmAt(g, x + 0.025, y + 0.025).logp) * 0.0025
      }
      expect(total).toBeCloseTo(1, 6)
    }
  })

  it("has q's posterior weights on the base's modes: r at a mode of q is log(w_k / (1/25))", () => {
    // At a mode centre the other components are ≥ 5 apart (25/0.6 ≈ 42 nats down): r = log(25 w_k).
    POSTERIOR9.means.forEach(([x, y], k) => {
      expect(posteriorRatio(x, y).r).toBeCloseTo(Math.log(25 * POSTERIOR9.weights[k]), 10)
    })
  })

  it("has E_q[r] = KL(q ‖ p) as Monte Carlo over exact draws from q says, and as the weights say", () => {
    const rng = openStream(["gmm-test"])
    const n = 100_000
    const sd = Math.sqrt(POSTERIOR9.variance)
    const cdf = POSTERIOR9.weights.map((_, k) => POSTERIOR9.weights.slice(0, k + 1).reduce((a, b) => a + b, 0))
    let sum = 0
    let sq = 0
    for (let i = 0; i < n; i++) {
      const u = rng.uniform()
      const [mx, my] = POSTERIOR9.means[cdf.findIndex((c) => u < c)]
      const r = posteriorRatio(mx + sd * rng.normal(), my + sd * rng.normal()).r
      sum += r
      sq += r * r
    }
    const mean = sum / n
    const se = Math.sqrt((sq / n - mean * mean) / n)
    const integral = posteriorExpectedReward()
    expect(Math.abs(integral - mean)).toBeLessThan(4 * se)
    // The modes barely overlap (5 apart, σ ≈ 0.55), so KL(q ‖ p) ≈ Σ w_k log(w_k / (1/25)) = 1.156…
    const byWeights = POSTERIOR9.weights.reduce((a, w) => a + w * Math.log(25 * w), 0)
    expect(integral).toBeCloseTo(byWeights, 4)
  })

  it("samples the base toy from the same 25 modes the reward's p has", () => {
    const { x, label } = sampleToy("gmm25", 2000, openStream(["gmm-toy"]))
    for (let i = 0; i < 2000; i++) {
      const [mx, my] = BASE25.means[label[i]]
      expect((x[2 * i] - mx) ** 2 + (x[2 * i + 1] - my) ** 2).toBeLessThan(25 * BASE25.variance)
    }
  })
})

describe("the cell KL to q", () => {
  it("is Σ p̂ log(p̂ / q̄) over q's 9 modes and the outside, with the delta method's s.e.", () => {
    const q = POSTERIOR9.weights.map((w) => w * (1 - Math.exp(-4.5)))
    // Samples exactly in q's within-3σ proportions, 1000 of them, nothing outside.
    const counts = q.map((v) => (1000 * v) / (1 - Math.exp(-4.5)))
    const { kl, se } = cellKl(counts, 0, 1000)
    expect(kl).toBeCloseTo(-Math.log(1 - Math.exp(-4.5)), 10)
    expect(se).toBeCloseTo(0, 10)
    // Half on the first mode, half outside: ½ log(½ / q0) + ½ log(½ / e^{−4.5}).
    const half = cellKl([500, 0, 0, 0, 0, 0, 0, 0, 0], 500, 1000)
    const l0 = Math.log(0.5 / q[0])
    const lo = Math.log(0.5 / Math.exp(-4.5))
    expect(half.kl).toBeCloseTo(0.5 * l0 + 0.5 * lo, 12)
    expect(half.se).toBeCloseTo(Math.sqrt((0.5 * l0 * l0 + 0.5 * lo * lo - half.kl ** 2) / 1000), 12)
  })
})
