import { describe, expect, it } from "vitest"
import { trackStepPrompts } from "../../nodes/rl/advantages.ts"
import { anchorOf, discountedReturns, interpolateRewards, similarities } from "../../nodes/rl/dense-rewards.ts"
import { openStream } from "../../random/streams.ts"

const predictions = (N: number, d: number) => {
  const rng = openStream(["dense", N, d])
  return Array.from({ length: N }, () => Float32Array.from({ length: d }, () => rng.normal()))
}
const cos = (a: Float32Array, b: Float32Array) => {
  let ab = 0, aa = 0, bb = 0
  for (let i = 0; i < a.length; i++) [ab, aa, bb] = [ab + a[i] * b[i], aa + a[i] * a[i], bb + b[i] * b[i]]
  return ab / Math.sqrt(aa * bb)
}

describe("SDPO dense rewards (§9.2)", () => {
  const x0 = predictions(8, 5)

  it("pick as anchor the step least similar to both the first and the last prediction", () => {
    const scores = x0.map((x) => cos(x, x0[0]) + cos(x, x0[7]))
    expect(anchorOf(x0)).toBe(scores.indexOf(Math.min(...scores)))
  })

  it(
    "equal the queried rewards at the first, anchor and last step, and interpolate by cosine similarity elsewhere",
    () => {
      const anchor = anchorOf(x0)
      const r = interpolateRewards(x0, anchor, 1, 2, 3)
      expect([r[0], r[anchor], r[7]]).toEqual([1, 2, 3])
      const k = [1, 2, 3, 4, 5, 6].find((i) => i !== anchor)!
      const [cf, ca, cl] = [cos(x0[k], x0[0]), cos(x0[k], x0[anchor]), cos(x0[k], x0[7])]
      expect(r[k]).toBeCloseTo((1 * cf + 2 * ca + 3 * cl) / (cf + ca + cl), 5)
    }
  )

  it("compute each cosine as separate dot products would, bit for bit (the fused pass changes no sum's order)", () => {
    const p = predictions(10, 784)
    const dot = (a: Float32Array, b: Float32Array) => {
      let ab = 0
      for (let i = 0; i < a.length; i++) ab += a[i] * b[i]
      return ab
    }
    const naive = (l: number) => p.map((v) => dot(v, p[l]) / Math.sqrt(dot(v, v) * dot(p[l], p[l])))
    const sim = similarities(p)
    expect(Array.from(sim.first)).toEqual(naive(0))
    expect(Array.from(sim.last)).toEqual(naive(9))
    expect(Array.from(sim.to(4))).toEqual(naive(4))
  })

  it("turn into discounted returns G_k = r_k + γ G_{k+1}", () => {
    const G = discountedReturns(Float64Array.from([1, 2, 3]), 0.5)
    expect(Array.from(G)).toEqual([1 + 0.5 * (2 + 0.5 * 3), 2 + 0.5 * 3, 3])
  })

  it("are normalized per (prompt, step): each step has its own buffer", () => {
    const returns = Float64Array.from([1, 10, 2, 20, 3, 30, 4, 40]) // 4 trajectories × 2 steps
    const { tracker } = trackStepPrompts(returns, 2, ["a", "a", "b", "b"], {}, 32, 16)
    expect(tracker).toEqual({ "a|0": [1, 2], "b|0": [3, 4], "a|1": [10, 20], "b|1": [30, 40] })
  })
})
