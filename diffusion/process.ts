/**
 * Forward processes as Gaussian paths `x_t = α(t)·x0 + σ(t)·ε` (docs/algorithms.md §1), and the one
 * conversion from a model output to the clean-sample and noise predictions x̂0, ε̂.
 *
 * Time convention (one for all of etaflow): `t` grows with noise and sampling runs from large to
 * small `t`. Rectified flow uses t = σ ∈ [0, 1] (σ = 1 pure noise, x_σ = (1 − σ)x0 + σε); discrete
 * VP uses the integer DDPM timestep 0..999; continuous VP and VE use their SDE time.
 */

export type ProcessKind = "rf" | "vp" | "ve"

export interface Process {
  readonly name: string
  readonly kind: ProcessKind
  /** Signal coefficient α(t). */
  readonly alpha: (t: number) => number
  /** Noise coefficient σ(t). */
  readonly sigma: (t: number) => number
  /** Standard deviation of the prior sampling starts from, at the first grid time. */
  readonly priorStd: (t: number) => number
  /** The time a network is given, in [0, 1] (networks multiply it by 1000 for their time features). */
  readonly modelTime: (t: number) => number
}

/** Rectified flow / flow matching: α = 1 − σ, σ = t (§1.3). */
export const rectifiedFlow: Process = {
  name: "rf",
  kind: "rf",
  alpha: (t) => 1 - t,
  sigma: (t) => t,
  priorStd: () => 1,
  modelTime: (t) => t
}

/** VP with ᾱ given as a function of continuous time, e.g. ᾱ(t) = exp(−t²/2) for β(t) = t (§3.5). */
export const vpContinuous = (name: string, alphaBar: (t: number) => number): Process => ({
  name,
  kind: "vp",
  alpha: (t) => Math.sqrt(alphaBar(t)),
  sigma: (t) => Math.sqrt(1 - alphaBar(t)),
  priorStd: () => 1,
  modelTime: (t) => t
})

/** VE with σ²(t) = t, i.e. dx = dW (§1.2); the prior N(0, T) ignores the data variance. */
export const veBrownian: Process = {
  name: "ve",
  kind: "ve",
  alpha: () => 1,
  sigma: (t) => Math.sqrt(t),
  priorStd: (t) => Math.sqrt(t),
  modelTime: (t) => t
}

export const VP_SCHEDULES = ["linear", "scaled-linear", "cosine"] as const
export type VpSchedule = (typeof VP_SCHEDULES)[number]

/** ᾱ_i for i = 0..N−1 of a discrete DDPM schedule (diffusers `scheduling_ddim.py`, §1.1). */
export const alphaBars = (schedule: VpSchedule, n = 1000): Float64Array => {
  const betas = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const u = n === 1 ? 0 : i / (n - 1)
    if (schedule === "linear") betas[i] = 1e-4 + u * (0.02 - 1e-4)
    else if (schedule === "scaled-linear") {
      betas[i] = (Math.sqrt(0.00085) + u * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2
    } else {
      const f = (s: number) => Math.cos(((s + 0.008) / 1.008) * (Math.PI / 2)) ** 2
      betas[i] = Math.min(1 - f((i + 1) / n) / f(i / n), 0.999)
    }
  }
  const out = new Float64Array(n)
  let prod = 1
  for (let i = 0; i < n; i++) out[i] = prod *= 1 - betas[i]
  return out
}

/** Discrete VP at integer timesteps 0..N−1 (DDPM/DDIM, ε-prediction as in DDPO and SDPO). */
export const vpDiscrete = (schedule: VpSchedule, n = 1000): Process => {
  const ab = alphaBars(schedule, n)
  const at = (t: number) => {
    if (!Number.isInteger(t) || t < 0 || t >= n) {
      throw new RangeError(`vp-${schedule}: timestep ${t} is not an integer in [0, ${n - 1}]`)
    }
    return ab[t]
  }
  return {
    name: `vp-${schedule}`,
    kind: "vp",
    alpha: (t) => Math.sqrt(at(t)),
    sigma: (t) => Math.sqrt(1 - at(t)),
    priorStd: () => 1,
    modelTime: (t) => t / n
  }
}

/** Signal-to-noise ratio α²/σ² (∞ at σ = 0). */
export const snr = (p: Process, t: number): number => (p.alpha(t) / p.sigma(t)) ** 2

export const PARAMETERIZATIONS = ["velocity", "epsilon", "x0"] as const
export type Parameterization = (typeof PARAMETERIZATIONS)[number]

/** `coef.x · x + coef.f · f`: a prediction as an affine function of the latent and the model output. */
export interface Affine {
  readonly x: number
  readonly f: number
}

/**
 * x̂0 and ε̂ from the raw model output f at time t (§1.1, §1.3). Velocity is the flow-matching
 * velocity v = ε − x0 and needs the rectified-flow path.
 */
export const predictions = (
  p: Process,
  param: Parameterization,
  t: number
): { readonly x0: Affine; readonly eps: Affine } => {
  const a = p.alpha(t)
  const s = p.sigma(t)
  switch (param) {
    case "velocity":
      if (p.kind !== "rf") throw new Error(`velocity prediction needs the rectified-flow process, not ${p.name}`)
      return { x0: { x: 1, f: -t }, eps: { x: 1, f: 1 - t } }
    case "epsilon":
      return { x0: { x: 1 / a, f: -s / a }, eps: { x: 0, f: 1 } }
    case "x0":
      return { x0: { x: 0, f: 1 }, eps: { x: 1 / s, f: -a / s } }
  }
}
