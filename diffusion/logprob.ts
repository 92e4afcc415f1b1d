/**
 * Policy log-probability of one transition (docs/algorithms.md §0.1, §6.2), float64.
 * "mean" (default, every reference implementation) averages over the d latent elements, so
 * exp(lp_new − lp_old) is the true density ratio to the power 1/d; "sum" is the exact log density.
 */
import type { LogProbConvention } from "./samplers.ts"

export type Reduce = "mean" | "sum"

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI)

/**
 * log N(xNext; a·x + b·f, s²I) over elements [offset, offset + d) of the three arrays.
 * Returns NaN for a deterministic step (s = 0), which has no log-prob.
 */
export const transitionLogProb = (
  xNext: ArrayLike<number>,
  x: ArrayLike<number>,
  f: ArrayLike<number>,
  offset: number,
  d: number,
  a: number,
  b: number,
  s: number,
  convention: LogProbConvention = "gaussian",
  reduce: Reduce = "mean"
): number => {
  if (s === 0) return Number.NaN
  let sq = 0
  for (let i = offset; i < offset + d; i++) {
    const r = xNext[i] - (a * x[i] + b * f[i])
    sq += r * r
  }
  return logProbOfSquares(sq, d, s, convention, reduce)
}

/** The log-prob from the summed squared residual Σ (x' − μ)² over the d elements (s > 0). */
export const logProbOfSquares = (
  sq: number,
  d: number,
  s: number,
  convention: LogProbConvention = "gaussian",
  reduce: Reduce = "mean"
): number => {
  // FlowCPS: −mean (x' − μ)², with no 1/(2s²) and no constants.
  if (convention === "unnormalized") return reduce === "mean" ? -sq / d : -sq
  const quad = -sq / (2 * s * s)
  return reduce === "mean" ? quad / d - Math.log(s) - HALF_LOG_2PI : quad - d * (Math.log(s) + HALF_LOG_2PI)
}
