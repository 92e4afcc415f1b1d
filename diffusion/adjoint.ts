/**
 * The lean adjoint of adjoint matching (Domingo-Enrich et al., arXiv 2409.08861; official code
 * microsoft/soc-fine-tuning-sd `src/trainers/am_trainer.py` `compute_adjoints`), docs/algorithms.md §10:
 *
 *   a_K = −λ ∇r(x_K),   a_k = a_{k+1} + ∇ₓ⟨μ(x) − x, a_{k+1}⟩|_{x = x_k}
 *
 * with μ(x) = a_k x + b_k f(x, t_k) the step's noiseless mean, so a_k = a_k·a_{k+1} + b_k·J_fᵀ a_{k+1}: the
 * vector–Jacobian product of the mean map. With f the base model this is the lean adjoint; with f the
 * current fine-tuned model, the full adjoint of the closed-loop drift (the deterministic variant,
 * §10). `from` truncates: only the adjoints of steps from..K are computed (the truncated scheme).
 */

/** J_fᵀ v at (x, t) for `batch` rows: the model's vector–Jacobian product with respect to x. */
export type Vjp = (x: Float32Array, batch: number, t: number, cotangent: Float32Array) => Promise<Float32Array>

export interface AdjointSpec {
  /** Mean coefficients and time of each step k = 0..K−1 (the sampler's a, b at t_k). */
  readonly steps: ReadonlyArray<{ readonly a: number; readonly b: number; readonly t: number }>
  /** The latents x_k of the trajectories (batch × d) at step k = 0..K. */
  readonly latent: (k: number) => Float32Array
  readonly batch: number
  /** a_K = −λ ∇r(x_K), batch × d. */
  readonly terminal: Float32Array
  readonly vjp: Vjp
  /** First step whose adjoint is computed (0: all; K − n: the last n steps). */
  readonly from?: number
}

/** The adjoints a_from … a_K (index k − from), each batch × d, from the terminal condition backward. */
export const leanAdjoint = async (spec: AdjointSpec): Promise<Array<Float32Array>> => {
  const K = spec.steps.length
  const from = spec.from ?? 0
  if (!(Number.isInteger(from) && from >= 0 && from <= K)) {
    throw new Error(`leanAdjoint: from must be an integer step in 0..${K}, got ${from}`)
  }
  const adjoints: Array<Float32Array> = new Array(K - from + 1)
  adjoints[K - from] = spec.terminal
  for (let k = K - 1; k >= from; k--) {
    const next = adjoints[k + 1 - from]
    const { a, b, t } = spec.steps[k]
    const jtv = await spec.vjp(spec.latent(k), spec.batch, t, next)
    adjoints[k - from] = Float32Array.from(next, (v, i) => a * v + b * jtv[i])
  }
  return adjoints
}
