/**
 * Adjoints of a sampled trajectory (docs/algorithms.md §10): the backward recursion that carries the
 * terminal condition a_K = −λ ∇r(x_K) to every step, for a step x_{k+1} = μ_k(x_k) + s_k z with the
 * noiseless mean μ_k(x) = a_k x + b_k f(x, t_k).
 *
 * - Lean adjoint (Domingo-Enrich et al., arXiv 2409.08861; official code microsoft/soc-fine-tuning-sd
 *   `src/trainers/am_trainer.py` `compute_adjoints`): a_k = a_{k+1} + ∇ₓ⟨μ_base(x) − x, a_{k+1}⟩|_{x_k}, i.e.
 *   a_k = a_k·a_{k+1} + b_k·J_fᵀ a_{k+1} with f the frozen base model.
 * - Value adjoint (this project's construction for seed 002's deterministic variant, §10): the gradient
 *   of the current policy's cost-to-go J_k(x) = ‖δ_k(x)‖²/(2 s_k²) + J_{k+1}(μ_θ,k(x)), J_K = −λ r, with the
 *   control δ_k = μ_θ,k − μ_base,k = b_k (f_θ − f_base):
 *     a_k = a_k·a_{k+1} + J_θᵀ(b_k a_{k+1} + w_k) − J_baseᵀ w_k,   w_k = b_k δ_k / s_k².
 *   At the optimum it coincides with the lean adjoint (the δ-derivative vanishes); the gradient of the
 *   terminal reward alone through the closed loop does not (§10: its fixed point is not optimal).
 *
 * `from` truncates: only a_from … a_K are computed (the truncated scheme of §10).
 */

/** J_fᵀ v at (x, t) for `batch` rows: a model's vector–Jacobian product with respect to x. */
export type Vjp = (x: Float32Array, batch: number, t: number, cotangent: Float32Array) => Promise<Float32Array>

/** f(x, t) for `batch` rows. */
export type Forward = (x: Float32Array, batch: number, t: number) => Promise<Float32Array>

/** f(x, t) and J_fᵀ v from one pass (a VJP computes the forward anyway). */
export type ForwardVjp = (
  x: Float32Array,
  batch: number,
  t: number,
  cotangent: Float32Array
) => Promise<{ readonly f: Float32Array; readonly jtv: Float32Array }>

export interface StepCoefficients {
  readonly a: number
  readonly b: number
  /** The step's start time, in the process's time (what Vjp and Forward take). */
  readonly t: number
}

export interface RecursionSpec {
  readonly steps: ReadonlyArray<StepCoefficients>
  /** The latents x_k of the trajectories (batch × d) at step k = 0..K. */
  readonly latent: (k: number) => Float32Array
  readonly batch: number
  /** a_K = −λ ∇r(x_K), batch × d. */
  readonly terminal: Float32Array
  /** First step whose adjoint is computed (0: all; K − n: the last n steps). */
  readonly from?: number
  /** Receives the base model's output f_base(x_k) where the recursion computes it (reused by the loss). */
  readonly baseOutput?: (k: number, f: Float32Array) => void
}

/** α·u + β·v elementwise, a new array (plain loops: this runs on every element of every step). */
const combine = (alpha: number, u: Float32Array, beta: number, v: Float32Array): Float32Array => {
  const out = new Float32Array(u.length)
  for (let i = 0; i < u.length; i++) out[i] = alpha * u[i] + beta * v[i]
  return out
}

/** One backward step: a_k from a_{k+1} at x_k. */
export type BackwardStep = (k: number, x: Float32Array, next: Float32Array) => Promise<Float32Array>

/** The spec's first step, checked. */
const startOf = (spec: RecursionSpec): number => {
  const K = spec.steps.length
  const from = spec.from ?? 0
  if (!(Number.isInteger(from) && from >= 0 && from <= K)) {
    throw new Error(`adjoint: from must be an integer step in 0..${K}, got ${from}`)
  }
  return from
}

/**
 * The adjoints a_from … a_K (index k − from), each batch × d, from the terminal condition backward; the
 * step is given (a fused session may compute the lean or value step in one pass).
 */
export const adjointRecursion = async (spec: RecursionSpec, backward: BackwardStep): Promise<Array<Float32Array>> => {
  const K = spec.steps.length
  const from = startOf(spec)
  const adjoints: Array<Float32Array> = new Array(K - from + 1)
  adjoints[K - from] = spec.terminal
  for (let k = K - 1; k >= from; k--) adjoints[k - from] = await backward(k, spec.latent(k), adjoints[k + 1 - from])
  return adjoints
}

/**
 * The whole lean recursion over a window of steps in one pass (a fused session): from a_K = `terminal`,
 * the adjoints a_0 … a_{S−1} of the S given steps and the model's output f(x_i, t_i) at each.
 */
export type FusedLeanAdjoint = (window: {
  readonly steps: ReadonlyArray<StepCoefficients>
  readonly latents: ReadonlyArray<Float32Array>
  readonly batch: number
  readonly terminal: Float32Array
}) => Promise<{ readonly adjoints: ReadonlyArray<Float32Array>; readonly outputs: ReadonlyArray<Float32Array> }>

/**
 * The lean adjoint of the model whose VJP is given (the frozen base model in adjoint matching); with
 * `forwardVjp`, the model's outputs of the same pass go to `baseOutput`. With `fused`, the whole window
 * is one call of it (the same recursion, in one graph) and its outputs go to `baseOutput`.
 */
export const leanAdjoint = async (
  spec: RecursionSpec & { readonly vjp: Vjp; readonly forwardVjp?: ForwardVjp; readonly fused?: FusedLeanAdjoint }
): Promise<Array<Float32Array>> => {
  const from = startOf(spec)
  const K = spec.steps.length
  if (spec.fused !== undefined && from < K) {
    const window = Array.from({ length: K - from }, (_, i) => from + i)
    const { adjoints, outputs } = await spec.fused({
      steps: window.map((k) => spec.steps[k]),
      latents: window.map((k) => spec.latent(k)),
      batch: spec.batch,
      terminal: spec.terminal
    })
    outputs.forEach((f, i) => spec.baseOutput?.(from + i, f))
    return [...adjoints, spec.terminal]
  }
  return adjointRecursion(spec, async (k, x, next) => {
    const { a, b, t } = spec.steps[k]
    let jtv: Float32Array
    if (spec.forwardVjp === undefined) jtv = await spec.vjp(x, spec.batch, t, next)
    else {
      const out = await spec.forwardVjp(x, spec.batch, t, next)
      spec.baseOutput?.(k, out.f)
      jtv = out.jtv
    }
    return combine(a, next, b, jtv)
  })
}

export interface Drift {
  readonly forward: Forward
  readonly vjp: Vjp
  readonly forwardVjp?: ForwardVjp
}

/**
 * The value adjoint: the gradient of the current policy's cost-to-go with the running cost
 * ‖δ_k‖²/(2 s_k²), `variance(k)` = s_k² (= h_k c_k for the deterministic variant).
 */
export const valueAdjoint = (
  spec: RecursionSpec & { readonly current: Drift; readonly base: Drift; readonly variance: (k: number) => number }
): Promise<Array<Float32Array>> =>
  adjointRecursion(spec, async (k, x, next) => {
    const { a, b, t } = spec.steps[k]
    const [fc, fb] = [await spec.current.forward(x, spec.batch, t), await spec.base.forward(x, spec.batch, t)]
    spec.baseOutput?.(k, fb)
    const scale = (b * b) / spec.variance(k)
    const w = combine(scale, fc, -scale, fb)
    const jc = await spec.current.vjp(x, spec.batch, t, combine(b, next, 1, w))
    const jb = await spec.base.vjp(x, spec.batch, t, w)
    const out = combine(a, next, 1, jc)
    for (let i = 0; i < out.length; i++) out[i] -= jb[i]
    return out
  })

export const ADJOINT_KINDS = ["value", "lean"] as const
export type AdjointKind = (typeof ADJOINT_KINDS)[number]

/** Which adjoint the loss of step k regresses onto: a_{k+1} (next) or a_k (state). */
export const TARGET_ADJOINTS = ["next", "state"] as const
export type TargetAdjoint = (typeof TARGET_ADJOINTS)[number]

export const COST_WEIGHTS = ["constant", "late"] as const
export type CostWeight = (typeof COST_WEIGHTS)[number]

/**
 * The deterministic variant's step variance s_k² = h_k · c̄_k (§10): a step of length h_k = t_k − t_{k+1}
 * (flow time, 1 = noise) whose control δ_k costs ‖δ_k‖²/(2 s_k²) = h_k ‖u‖²/(2 c̄_k), c̄_k the mean of the
 * running-cost weight over the step — constant: c = 1 (the KL-like quadratic cost); late: c(t) = 2(1 − t),
 * mean 1 over [0, 1], so control is cheap near the data and costly near the noise.
 */
export const runningVariance = (t: number, tNext: number, weight: CostWeight): number => {
  const h = t - tNext
  return weight === "constant" ? h : h * (2 - t - tNext)
}
