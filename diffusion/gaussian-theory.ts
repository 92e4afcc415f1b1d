/**
 * Closed-form output of the continuous λ-family sampler (gDDIM, §3.2) for Gaussian data
 * N(μ0, s0²) per coordinate with the exact score, started from the standard prior
 * (docs/algorithms.md §3.5, derived and checked there against a 1e5-step integration).
 *
 * Prior errors E_T = prior mean − m_T, D_T = prior variance − v_T are contracted by K_λ:
 *   VE (σ² = t, prior N(0, T)):  K_λ = (s0² / (s0² + T))^((1 + λ²)/2),  E_T = −μ0,  D_T = −s0²
 *   VP (prior N(0, 1)):          K_λ = √(s0²/v_T) · (s0² ᾱ_T / v_T)^(λ²/2),
 *                                E_T = −√ᾱ_T μ0,  D_T = ᾱ_T (1 − s0²),  v_T = ᾱ_T s0² + 1 − ᾱ_T
 *   M_λ = μ0 + E_T K_λ,  V_λ = s0² + D_T K_λ²
 * With the reward r(x) = −x²/2, E[r] = −(M² + V)/2 and the gap Δ_λ = E_λ[r] − E_0[r] (SDE − ODE).
 */

export interface GaussianTheory {
  readonly process: "ve" | "vp"
  /** Time horizon T (VE: prior variance; VP: ᾱ_T = exp(−T²/2), i.e. β(t) = t). */
  readonly T: number
  readonly mu0: number
  readonly s0: number
}

export const vpAlphaBar = (T: number) => Math.exp((-T * T) / 2)

export const lambdaMoments = (g: GaussianTheory, lambda: number): { mean: number; variance: number } => {
  const s2 = g.s0 * g.s0
  let K: number
  let E: number
  let D: number
  if (g.process === "ve") {
    K = (s2 / (s2 + g.T)) ** ((1 + lambda * lambda) / 2)
    E = -g.mu0
    D = -s2
  } else {
    const ab = vpAlphaBar(g.T)
    const vT = ab * s2 + 1 - ab
    K = Math.sqrt(s2 / vT) * ((s2 * ab) / vT) ** ((lambda * lambda) / 2)
    E = -Math.sqrt(ab) * g.mu0
    D = ab * (1 - s2)
  }
  return { mean: g.mu0 + E * K, variance: s2 + D * K * K }
}

/** E[−x²/2] of N(mean, variance). */
export const quadraticReward = (m: { mean: number; variance: number }) => -(m.mean * m.mean + m.variance) / 2

/** Reward gap Δ_λ = E_λ[r] − E_0[r] for r(x) = −x²/2, per coordinate. */
export const gapExact = (g: GaussianTheory, lambda: number): number =>
  quadraticReward(lambdaMoments(g, lambda)) - quadraticReward(lambdaMoments(g, 0))

/** The rate stated in the project brief (Sheng et al., unverified, §3.4): (2T)⁻¹ for VE, e^{−T²/2} for VP. */
export const gapBound = (
  process: "ve" | "vp",
  T: number
): number => (process === "ve" ? 1 / (2 * T) : Math.exp((-T * T) / 2))
