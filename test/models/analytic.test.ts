import { describe, expect, it } from "vitest"
import {
  type Parameterization,
  predictions,
  type Process,
  rectifiedFlow,
  veBrownian,
  vpDiscrete
} from "../../diffusion/process.ts"
import { doubleRing, gaussianData, mixture } from "../../models/analytic.ts"

const x0Of = async (p: ReturnType<typeof gaussianData>, x: Float32Array, batch: number, t: number) => {
  const f = await p.predict(x, batch, t)
  const c = predictions(p.process, p.parameterization, t).x0
  return Array.from(x, (xi, i) => c.x * xi + c.f * f[i])
}

describe("analytic models", () => {
  const setups: Array<[Process, Parameterization, number]> = [[rectifiedFlow, "velocity", 0.6], [
    vpDiscrete("cosine"),
    "epsilon",
    500
  ], [veBrownian, "x0", 2]]

  it.each(setups)(
    "return in any parameterization the same posterior mean (%s)",
    async (process, parameterization, t) => {
      const x = Float32Array.from([0.3, -1.2])
      const direct = await x0Of(gaussianData({ mean: 0.5, std: 0.8, dim: 2, process, parameterization: "x0" }), x, 1, t)
      const converted = await x0Of(gaussianData({ mean: 0.5, std: 0.8, dim: 2, process, parameterization }), x, 1, t)
      for (let i = 0; i < 2; i++) expect(converted[i]).toBeCloseTo(direct[i], 5)
      // E[x0 | x_t] = μ0 + α s0² (x − α μ0) / (α² s0² + σ²)
      const a = process.alpha(t), s = process.sigma(t)
      expect(direct[0]).toBeCloseTo(0.5 + (a * 0.64 * (0.3 - a * 0.5)) / (a * a * 0.64 + s * s), 6)
    }
  )

  it("a one-component mixture is the Gaussian model", async () => {
    const x = Float32Array.from([0.3, -1.2, 2, 0.1])
    const g = await gaussianData({ mean: 0.5, std: 0.8, dim: 2, process: rectifiedFlow, parameterization: "velocity" })
      .predict(x, 2, 0.4)
    const m = await mixture("one", [{ weight: 1, mean: [0.5, 0.5], std: 0.8 }], rectifiedFlow, "velocity").predict(
      x,
      2,
      0.4
    )
    for (let i = 0; i < 4; i++) expect(m[i]).toBeCloseTo(g[i], 5)
  })

  it("the double ring's posterior mean is the atoms' average at σ = 1 and the nearest atom as σ → 0", async () => {
    const ring = doubleRing(rectifiedFlow, "x0")
    const atNoise = await ring.predict(Float32Array.from([0.7, -0.4]), 1, 1)
    expect(Math.abs(atNoise[0]) + Math.abs(atNoise[1])).toBeLessThan(1e-6)
    const near = await ring.predict(Float32Array.from([2.001 * 0.999, 0.0005]), 1, 0.001)
    expect(near[0]).toBeCloseTo(2, 5)
    expect(near[1]).toBeCloseTo(0, 5)
  })
})
