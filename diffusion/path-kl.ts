/**
 * The KL divergence of a policy's sampling path from the base's (docs/algorithms.md §13.3): both
 * transitions are Gaussian with the same s, x_{k+1} ~ N(a·x_k + b·f(x_k), s²I), so along a recorded
 * trajectory of the policy
 *   KL(path_θ ‖ path_base) = Σ_k ‖b_k (f_θ(x_k) − f_base(x_k))‖² / (2 s_k²),
 * exact for the discrete chain (the chain rule of KL over Markov transitions, each term an expectation
 * under the policy's own path, estimated by the recorded one). Steps without noise (s = 0) are left out:
 * two Dirac transitions with different means are infinitely apart, and no sampler trains on them.
 * For a memoryless sampler this is the discretisation of ½ ∫ ‖u_t‖² dt of adjoint matching's control.
 */
import type { Policy } from "./policy.ts"
import type { StepRecord } from "./rollout.ts"

/** Σ_i (b·(f_i − g_i))² over one row, in float64 (a function of its own, so the engine optimises it). */
const squaredGap = (f: Float32Array, g: Float32Array, o: number, d: number, b: number): number => {
  let sq = 0
  for (let i = o; i < o + d; i++) {
    const e = b * (f[i] - g[i])
    sq += e * e
  }
  return sq
}

/**
 * The path KL of each of `chains` recorded trajectories (latents (N + 1) × chains × d) of `policy`
 * from `base`, both evaluated at the policy's states.
 */
export const pathKl = async (opts: {
  readonly steps: ReadonlyArray<StepRecord>
  readonly latents: Float32Array
  readonly chains: number
  readonly d: number
  readonly policy: Policy
  readonly base: Policy
  readonly condition?: Int32Array | undefined
}): Promise<Float64Array> => {
  const { steps, latents, chains, d } = opts
  const n = chains * d
  const kl = new Float64Array(chains)
  for (let k = 0; k < steps.length; k++) {
    const { b, s, t } = steps[k]
    if (!(s > 0)) continue
    const x = latents.subarray(k * n, (k + 1) * n)
    const f = await opts.policy.predict(x, chains, t, opts.condition)
    const g = await opts.base.predict(x, chains, t, opts.condition)
    for (let j = 0; j < chains; j++) kl[j] += squaredGap(f, g, j * d, d, b) / (2 * s * s)
  }
  return kl
}
