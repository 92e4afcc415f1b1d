import { EigenvalueDecomposition, Matrix } from "ml-matrix"
import { describe, expect, it } from "vitest"
import { diversity, type Features, featureStats, frechetDistance } from "../../models/quality.ts"
import { openStream } from "../../random/streams.ts"

const gaussian = (count: number, width: number, key: string, scale: (k: number) => number, shift = 0): Features => {
  const rng = openStream(["quality-test", key])
  const data = new Float64Array(count * width)
  for (let i = 0; i < count; i++) {
    // Correlated columns: each feature mixes its own normal with the previous one's.
    let prev = 0
    for (let k = 0; k < width; k++) {
      const z = rng.normal()
      data[i * width + k] = shift + scale(k) * (z + 0.5 * prev)
      prev = z
    }
  }
  return { data, count, width }
}

/** FID's textbook form: sample covariances and a width × width square root through eigendecompositions. */
const frechetByMatrixSqrt = (x: Features, y: Features): number => {
  const stats = (f: Features) => {
    const m = new Matrix(f.count, f.width)
    for (let i = 0; i < f.count; i++) for (let k = 0; k < f.width; k++) m.set(i, k, f.data[i * f.width + k])
    const mean = m.mean("column")
    const c = m.clone().subRowVector(mean)
    return { mean, cov: c.transpose().mmul(c).div(f.count - 1) }
  }
  const sqrtm = (s: Matrix) => {
    const e = new EigenvalueDecomposition(s, { assumeSymmetric: true })
    const v = e.eigenvectorMatrix
    return v.mmul(Matrix.diag(e.realEigenvalues.map((l) => Math.sqrt(Math.max(l, 0))))).mmul(v.transpose())
  }
  const a = stats(x)
  const b = stats(y)
  const ra = sqrtm(a.cov)
  const inner = ra.mmul(b.cov).mmul(ra)
  const mean = a.mean.reduce((s, v, k) => s + (v - b.mean[k]) ** 2, 0)
  return mean + a.cov.trace() + b.cov.trace() - 2 * sqrtm(inner).trace()
}

describe("Fréchet distance", () => {
  it("matches the closed form (μ₁ − μ₂)² + (σ₁ − σ₂)² of two one-dimensional samples", () => {
    const x: Features = { data: Float64Array.of(1, 2, 3, 4), count: 4, width: 1 }
    const y: Features = { data: Float64Array.of(0, 4, 8), count: 3, width: 1 }
    // x: mean 2.5, unbiased variance 5/3; y: mean 4, variance 16.
    const expected = (2.5 - 4) ** 2 + (Math.sqrt(5 / 3) - 4) ** 2
    expect(frechetDistance(featureStats(x), featureStats(y))).toBeCloseTo(expected, 12)
  })

  it("agrees with the textbook matrix square root, with fewer samples than features and with a large reference", () => {
    const few = gaussian(12, 20, "few", (k) => 1 + k / 10, 0.3)
    const ref = gaussian(60, 20, "ref", () => 1)
    // Relative 1e-6: eigenvalues that are 0 in exact arithmetic (rank ≤ n − 1) come out as ±ε‖M‖ and add
    // √(ε‖M‖) ≈ 1e-7 each to a trace of square roots, in either form.
    for (const [x, y] of [[few, ref], [ref, few], [few, gaussian(9, 20, "other", () => 2)]] as const) {
      const expected = frechetByMatrixSqrt(x, y)
      expect(Math.abs(frechetDistance(featureStats(x), featureStats(y)) - expected)).toBeLessThan(1e-6 * expected)
    }
  })

  it("is zero for a sample against itself and grows with a shift of the mean", () => {
    const x = featureStats(gaussian(50, 8, "self", () => 1))
    // Same rounding bound as above, against tr Σ ≈ 10: a broken trace term would be off by O(1).
    expect(Math.abs(frechetDistance(x, x))).toBeLessThan(1e-5)
    const shifted = featureStats(gaussian(50, 8, "self", () => 1, 1))
    // The same draws moved by 1 in each of 8 features: ‖Δμ‖² = 8, covariances identical.
    expect(frechetDistance(x, shifted)).toBeCloseTo(8, 5)
  })
})

describe("diversity", () => {
  it("is the mean pairwise distance within each group, averaged over the groups", () => {
    const f: Features = { data: Float64Array.of(0, 0, 3, 4, 0, 0, 1, 0, 5, 5), count: 5, width: 2 }
    // Group [0, 1]: one pair at distance 5. Group [2, 3, 4]: distances 1, √50, √41.
    const expected = (5 + (1 + Math.sqrt(50) + Math.sqrt(41)) / 3) / 2
    expect(diversity(f, [[0, 1], [2, 3, 4]])).toBeCloseTo(expected, 12)
  })
})
