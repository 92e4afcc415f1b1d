import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { gapExact, lambdaMoments, vpAlphaBar } from "../../diffusion/gaussian-theory.ts"
import { runPipeline } from "../../kernel/run.ts"
import { TheoryGapTable } from "../../nodes/gap-table.ts"
import { theoryGap } from "../../pipelines/theory-gap.ts"
import { fromParquet } from "../../store/parquet.ts"
import { metricLines, tempRun } from "../support/runs.ts"

describe("the Gaussian reward-gap theory (§3.5)", () => {
  it("VE with s0 = 1, μ0 = 0 has Δ_λ = ½[(1+T)^−(1+λ²) − (1+T)^−1], below (2T)⁻¹", () => {
    for (const T of [0.3, 1, 5, 50]) {
      for (const lambda of [0.5, 1, 2]) {
        const expected = 0.5 * ((1 + T) ** -(1 + lambda * lambda) - 1 / (1 + T))
        expect(gapExact({ process: "ve", T, mu0: 0, s0: 1 }, lambda)).toBeCloseTo(expected, 14)
        expect(Math.abs(expected)).toBeLessThan(1 / (2 * T))
      }
    }
  })

  it("VP with β(t) = t, s0 = ½, μ0 = 0 has 0 ≤ Δ_λ ≤ ½ ᾱ_T (1 − s0²) < e^{−T²/2}", () => {
    for (const T of [0.5, 1, 2, 3]) {
      const ab = vpAlphaBar(T)
      const vT = ab * 0.25 + 1 - ab
      const K = (lambda: number) => Math.sqrt(0.25 / vT) * ((0.25 * ab) / vT) ** ((lambda * lambda) / 2)
      const D = ab * 0.75
      for (const lambda of [0.5, 1, 2]) {
        const gap = gapExact({ process: "vp", T, mu0: 0, s0: 0.5 }, lambda)
        expect(gap).toBeCloseTo(0.5 * D * (K(0) ** 2 - K(lambda) ** 2), 14)
        expect(gap).toBeGreaterThanOrEqual(0)
        expect(gap).toBeLessThanOrEqual(0.5 * ab * 0.75)
        expect(gap).toBeLessThan(Math.exp((-T * T) / 2))
      }
    }
  })

  it("λ = 0 has no gap and the ODE keeps the VE prior error contracted by √(s0²/(s0² + T))", () => {
    expect(gapExact({ process: "ve", T: 2, mu0: 1, s0: 1 }, 0)).toBe(0)
    expect(lambdaMoments({ process: "ve", T: 3, mu0: 1, s0: 1 }, 0).mean).toBeCloseTo(1 - 0.5, 14)
  })
})

describe("theory-gap", () => {
  it(
    "samples a gap within MC error of the exact discretized gap, and within discretization error of the closed form",
    async () => {
      const dir = tempRun("tg")
      await Effect.runPromise(
        runPipeline(theoryGap, {
          out: dir,
          progress: "none",
          set: { process: "vp", T: "1.5", s0: "0.5", lambda: "1.5", steps: "600", chains: "4000", sweepT: "0.5,3" }
        })
      )
      const { rows, columns: c } = TheoryGapTable.read(
        fromParquet(new Uint8Array(fs.readFileSync(path.join(dir, "theory-gap.parquet"))), "t"),
        "theory-gap"
      )
      expect(Array.from(c.T)).toEqual([1.5, 0.5, 3])
      for (let i = 0; i < rows; i++) {
        expect(Math.abs(c.gap_sampled[i] - c.gap_discrete[i])).toBeLessThan(5 * c.gap_sampled_se[i])
        expect(Math.abs(c.gap_discrete[i] - c.gap_exact[i])).toBeLessThan(5e-3)
        expect(c.within_bound[i]).toBe(1)
      }
      const metrics = metricLines(dir).map((r) => r.name)
      expect(metrics).toEqual(["gap_exact", "gap_sampled", "gap_sampled_se", "gap_discrete", "bound"])
    }
  )
})
