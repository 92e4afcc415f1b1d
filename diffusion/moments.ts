/**
 * Exact moments of a sampler's output for Gaussian data N(μ0, s0²) per coordinate with the exact
 * model (docs/algorithms.md §3.5). Every step is affine in x plus Gaussian noise, so the mean and
 * variance of the discretized sampler propagate in closed form — no Monte Carlo. This measures the
 * discretization error of a sampler exactly, and is what sampled rollouts must agree with.
 */
import { type Parameterization, predictions, type Process } from "./process.ts"
import type { Sampler, StepContext } from "./samplers.ts"

export const gaussianSamplerMoments = (opts: {
  readonly process: Process
  readonly parameterization: Parameterization
  readonly sampler: Sampler
  readonly noise: number
  readonly grid: ReadonlyArray<number>
  readonly mean: number
  readonly std: number
  /** Mean of the prior (0 for the standard samplers). */
  readonly priorMean?: number
}): { mean: number; variance: number } => {
  const { process, parameterization, grid } = opts
  const s2 = opts.std * opts.std
  let m = opts.priorMean ?? 0
  let v = process.priorStd(grid[0]) ** 2
  for (let step = 0; step + 1 < grid.length; step++) {
    const t = grid[step]
    const ctx: StepContext = { process, parameterization, grid, step }
    const { a, b, s } = opts.sampler(ctx, opts.noise)
    const alpha = process.alpha(t)
    const sigma = process.sigma(t)
    // Exact model: x̂0 = μ0 + g (x − α μ0); the output f solves x̂0 = c.x x + c.f f.
    const g = (alpha * s2) / (alpha * alpha * s2 + sigma * sigma)
    const c = predictions(process, parameterization, t).x0
    const f1 = (g - c.x) / c.f
    const f0 = (opts.mean * (1 - g * alpha)) / c.f
    const gain = a + b * f1
    m = gain * m + b * f0
    v = gain * gain * v + s * s
  }
  return { mean: m, variance: v }
}
