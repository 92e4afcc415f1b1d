import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { gapBound, gapExact, lambdaMoments } from "../../diffusion/gaussian-theory.ts"
import { runPipeline } from "../../kernel/run.ts"
import { TheoryGapTable } from "../../nodes/studies/gap-table.ts"
import { theoryGap } from "../../pipelines/theory-gap.ts"
import { fromParquet } from "../../store/parquet.ts"
import { metricLines, tempRun } from "../support/runs.ts"

/**
 * The λ-family's output moments integrated numerically from its SDE, independently of the closed form:
 * reverse-time dx = [f − (1 + λ²)/2 · g² ∇log p_t] dt + λ g dW̄ with the exact score of the Gaussian
 * marginals, whose mean m and variance v then follow (forward t, integrated from T down to 0 by RK4)
 *   dm/dt = f_x m + (1 + λ²)/2 · g² (m − m_t)/v_t,   dv/dt = 2 f_x v + (1 + λ²) g² v / v_t − λ² g².
 * VE: σ² = t, f = 0, g² = 1, prior N(0, T); VP: β(t) = t, f_x = −t/2, g² = t, prior N(0, 1).
 */
const integratedGap = (g: { process: "ve" | "vp"; T: number; mu0: number; s0: number }, lambda: number) => {
  const s2 = g.s0 * g.s0
  const marginal = (t: number) => {
    if (g.process === "ve") return { m: g.mu0, v: s2 + t, fx: 0, g2: 1 }
    const ab = Math.exp((-t * t) / 2)
    return { m: Math.sqrt(ab) * g.mu0, v: ab * s2 + 1 - ab, fx: -t / 2, g2: t }
  }
  const moments = (lam: number) => {
    const rhs = (t: number, [m, v]: ReadonlyArray<number>) => {
      const p = marginal(t)
      const k = ((1 + lam * lam) / 2) * p.g2
      return [p.fx * m + (k * (m - p.m)) / p.v, 2 * p.fx * v + (2 * k * v) / p.v - lam * lam * p.g2]
    }
    let y = [0, g.process === "ve" ? g.T : 1]
    const n = 20_000
    const h = -g.T / n
    for (let i = 0; i < n; i++) {
      const t = g.T + i * h
      const k1 = rhs(t, y)
      const k2 = rhs(t + h / 2, y.map((v, j) => v + (h / 2) * k1[j]))
      const k3 = rhs(t + h / 2, y.map((v, j) => v + (h / 2) * k2[j]))
      const k4 = rhs(t + h, y.map((v, j) => v + h * k3[j]))
      y = y.map((v, j) => v + (h / 6) * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]))
    }
    return -(y[0] * y[0] + y[1]) / 2
  }
  return moments(lambda) - moments(0)
}

describe("the Gaussian reward-gap theory (§3.5)", () => {
  // RK4 with 20,000 steps: its error is far below 1e-8 on these smooth moment equations.
  it("gives the gap that integrating the λ-family SDE's moment equations gives, VE and VP, any μ0 and s0", () => {
    for (const process of ["ve", "vp"] as const) {
      for (const [T, mu0, s0] of [[0.5, 0, 1], [2, 1, 0.5], [3, -0.7, 0.8]] as const) {
        for (const lambda of [0.5, 1, 2]) {
          const g = { process, T, mu0, s0 }
          expect(Math.abs(gapExact(g, lambda) - integratedGap(g, lambda)), `${process} T=${T} λ=${lambda}`)
            .toBeLessThan(1e-8)
        }
      }
    }
  })

  it("keeps the integrated gap within the brief's rates, (2T)⁻¹ for VE and e^{−T²/2} for VP", () => {
    for (const T of [0.5, 1, 3]) {
      for (const lambda of [0.5, 1, 2]) {
        expect(Math.abs(integratedGap({ process: "ve", T, mu0: 0, s0: 1 }, lambda))).toBeLessThan(gapBound("ve", T))
        expect(Math.abs(integratedGap({ process: "vp", T, mu0: 0, s0: 0.5 }, lambda))).toBeLessThan(gapBound("vp", T))
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
