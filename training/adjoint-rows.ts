/**
 * Adjoint matching's rows (docs/algorithms.md §10): per trajectory the reference's time indices inside the
 * adjoint window, the base's means at them, and a minibatch's feeds for the loss graph — with the request
 * the update loop (training/adjoint-update.ts) is given.
 */
import { type CostWeight, runningVariance, type TargetAdjoint } from "../diffusion/adjoint.ts"
import type { Process } from "../diffusion/process.ts"
import type { Rollout } from "../diffusion/rollout.ts"
import { sampleTimeIndices } from "../models/adjoint-loss.ts"
import type { VelocityNetConfig } from "../models/velocity-net.ts"
import type { RandomStream } from "../random/streams.ts"
import { type Adjoints, latentsAt } from "./adjoints.ts"

export interface AmUpdateRequest {
  readonly net: VelocityNetConfig
  /** The trained network is a control added to the frozen base (f_ft = f_base + g_θ). */
  readonly residual: boolean
  readonly deterministic: boolean
  /** Regress step k onto a_{k+1} (next) or a_k (state, am_trainer.py's index). */
  readonly targetAdjoint: TargetAdjoint
  readonly costWeight: CostWeight
  readonly lr: number
  readonly batchSize: number
  readonly innerEpochs: number
  readonly threads: number
  /** Drop rows at or above the EMA of the 90th percentile of √ℓ (the reference's per-sample clipping). */
  readonly lossClip: boolean
  /** Whether a batch's own quantile enters the EMA before it masks the batch (the reference's order). */
  readonly lossClipOrder: "previous" | "reference"
  /** Gradient norm clipping; 0: none. */
  readonly gradClip: number
  /** Optimizer steps of the linear learning-rate warm-up from 0 (counted over the whole run). */
  readonly warmupSteps: number
  readonly weightDecay: number
  /** Probability that an optimizer batch trains the unconditional branch (a conditional network only). */
  readonly promptDropout: number
}

export type Row = readonly [j: number, k: number]

/** The rows of an iteration: per trajectory, the reference's time indices inside the window. */
export const rowsOf = (r: Rollout, from: number, deterministic: boolean, stream: RandomStream): Array<Array<Row>> => {
  const N = r.steps.length
  return Array.from({ length: r.chains }, (_, j) =>
    sampleTimeIndices(N - from, stream.child("time", j))
      .map((i) => from + i)
      // A deterministic step of a stochastic sampler has no s to divide by (§12.3).
      .filter((k) => deterministic || r.steps[k].s > 0)
      .map((k) => [j, k] as const))
}

/** Row q of `mu` ← a·x_j + b·f_j (rows of d); a function of its own, so the engine optimises the loop. */
const meanRow = (
  mu: Float32Array,
  q: number,
  x: Float32Array,
  f: Float32Array,
  j: number,
  coef: { readonly a: number; readonly b: number },
  d: number
) => {
  const { a, b } = coef
  for (let e = 0; e < d; e++) mu[q * d + e] = a * x[j * d + e] + b * f[j * d + e]
}

/** μ_base at the rows' latents from f_base of every chain at each step the rows use. */
export const baseMeans = async (
  r: Rollout,
  rows: ReadonlyArray<Row>,
  baseOutput: (k: number) => Promise<Float32Array>
) => {
  const outputs = new Map<number, Float32Array>()
  for (const [, k] of rows) if (!outputs.has(k)) outputs.set(k, await baseOutput(k))
  const mu = new Float32Array(rows.length * r.d)
  rows.forEach(([j, k], q) => meanRow(mu, q, latentsAt(r, k), outputs.get(k)!, j, r.steps[k], r.d))
  return mu
}

/** The loss graph's feeds for a minibatch of rows. */
export const feedsOf = (opts: {
  readonly r: Rollout
  readonly rows: ReadonlyArray<Row>
  readonly adjoints: Adjoints
  readonly muBase: Float32Array
  readonly request: AmUpdateRequest
  readonly process: Process
  readonly condition?: Int32Array | undefined
  readonly threshold: number
}) => {
  const { r, rows, adjoints, request } = opts
  const d = r.d
  const M = rows.length
  const x = new Float32Array(M * d)
  const adj = new Float32Array(M * d)
  const std = (k: number) =>
    request.deterministic
      ? Math.sqrt(runningVariance(r.steps[k].t, r.steps[k].tNext, request.costWeight))
      : r.steps[k].s
  rows.forEach(([j, k], q) => {
    x.set(latentsAt(r, k).subarray(j * d, (j + 1) * d), q * d)
    const a = adjoints.values[k + (request.targetAdjoint === "next" ? 1 : 0) - adjoints.from]
    adj.set(a.subarray(j * d, (j + 1) * d), q * d)
  })
  const col = (f: (k: number) => number) => Float32Array.from(rows, ([, k]) => f(k))
  return {
    x: { data: x, dims: [M, d] },
    t: { data: col((k) => opts.process.modelTime(r.steps[k].t)), dims: [M] },
    ...(opts.condition === undefined
      ? {}
      : { c: { data: BigInt64Array.from(rows, ([j]) => BigInt(opts.condition![j])), dims: [M] } }),
    mu_base: { data: opts.muBase, dims: [M, d] },
    adjoint: { data: adj, dims: [M, d] },
    a: { data: col((k) => r.steps[k].a), dims: [M] },
    b: { data: col((k) => r.steps[k].b), dims: [M] },
    s: { data: col(std), dims: [M] },
    w: { data: new Float32Array(M).fill(1 / M), dims: [M] },
    // float32 has no room for larger thresholds; Infinity (nothing clipped yet) becomes its maximum.
    threshold: { data: Float32Array.of(Math.min(opts.threshold, 3.4e38)), dims: [] }
  }
}
