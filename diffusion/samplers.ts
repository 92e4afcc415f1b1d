/**
 * Samplers as Gaussian transitions `x_next ~ N(a·x + b·f, s²I)` with scalars a, b, s that depend
 * on the process, the grid and the step only (docs/algorithms.md §0, §2–§7).
 *
 * Every sampler is written as the deterministic step plus a multiple of ε̂:
 *   μ = ODE(x, f) + k·ε̂,
 * where ODE is DDIM η = 0 (= the Euler step for rectified flow, §2) and k is the sampler's
 * correction. With noise level 0 every k is exactly 0, so every sampler reproduces the ODE step bit
 * for bit. Samplers share one signature `(ctx, noise) → Transition`, like k-diffusion's.
 */
import { Data } from "effect"
import { type Affine, type Parameterization, predictions, type Process, snr } from "./process.ts"

export interface StepContext {
  readonly process: Process
  readonly parameterization: Parameterization
  /** The whole grid t_0 > … > t_N (Flow-GRPO's first-step rule reads t_1). */
  readonly grid: ReadonlyArray<number>
  /** Step index k: the step goes from grid[k] to grid[k + 1]. */
  readonly step: number
}

export type LogProbConvention = "gaussian" | "unnormalized"

export interface Transition {
  readonly a: number
  readonly b: number
  /** Standard deviation; 0 marks a deterministic step (no log-prob, never in a policy loss). */
  readonly s: number
  /** x̂0 = x0.x·x + x0.f·f at the start of the step. */
  readonly x0: Affine
  /** How the policy log-prob of this step is computed (CPS's own convention, §6.2). */
  readonly logProb: LogProbConvention
}

export type Sampler = (ctx: StepContext, noise: number) => Transition

/** A sampler cannot take this step (it names the sampler and the step). */
export class SamplerError extends Data.TaggedError("SamplerError")<
  { readonly sampler: string; readonly step: number; readonly message: string }
> {}

/** Steps with a smaller std are deterministic (docs/algorithms.md §12.3). */
export const DETERMINISTIC_STD = 1e-12

const times = (ctx: StepContext) => ({ t: ctx.grid[ctx.step], tn: ctx.grid[ctx.step + 1] })

const requireFlow = (ctx: StepContext, sampler: string) => {
  if (ctx.process.kind !== "rf") {
    throw new SamplerError({
      sampler,
      step: ctx.step,
      message: `sampler ${sampler} is defined for rectified flow only, not for ${ctx.process.name}`
    })
  }
}

/** μ = ODE + k·ε̂ as (a, b); the ODE part is the Euler step for flows and DDIM η = 0 otherwise. */
const meanWithCorrection = (
  ctx: StepContext,
  k: number,
  s: number,
  logProb: LogProbConvention = "gaussian"
): Transition => {
  const { t, tn } = times(ctx)
  const { x0, eps } = predictions(ctx.process, ctx.parameterization, t)
  let a: number
  let b: number
  if (ctx.process.kind === "rf") {
    // Euler: x + (σ' − σ)·v̂ with v̂ = (x − x̂0)/σ; exact x + dt·f for the velocity parameterization.
    const dt = tn - t
    const v: Affine = ctx.parameterization === "velocity" ? { x: 0, f: 1 } : { x: (1 - x0.x) / t, f: -x0.f / t }
    a = 1 + dt * v.x
    b = dt * v.f
  } else {
    const an = ctx.process.alpha(tn)
    const sn = ctx.process.sigma(tn)
    a = an * x0.x + sn * eps.x
    b = an * x0.f + sn * eps.f
  }
  if (k !== 0) {
    a += k * eps.x
    b += k * eps.f
  }
  return { a, b, s: s < DETERMINISTIC_STD ? 0 : s, x0, logProb }
}

/** DDIM-form step `α' x̂0 + σ' ρ ε̂ + s z`, ρ = √(1 − s²/σ'²): the correction is k = −σ'(1 − ρ). */
const ddimForm = (ctx: StepContext, rho: number, s: number, logProb: LogProbConvention = "gaussian") => {
  const sn = ctx.process.sigma(times(ctx).tn)
  return meanWithCorrection(ctx, rho === 1 ? 0 : -sn * (1 - rho), s, logProb)
}

/** SNR_t / SNR_t' ∈ [0, 1] (0 when t' is noise-free). */
const snrRatio = (ctx: StepContext) => {
  const { t, tn } = times(ctx)
  return ctx.process.sigma(tn) === 0 ? 0 : snr(ctx.process, t) / snr(ctx.process, tn)
}

/**
 * Deterministic step (§2): μ = α' x̂0 + σ' ε̂ (DDIM η = 0, Song et al. 2010.02502 eq. 12; for
 * rectified flow the Euler step x + (σ' − σ) v̂), s = 0.
 */
export const ode: Sampler = (ctx) => meanWithCorrection(ctx, 0, 0)

/**
 * DDIM-η (Song et al. 2010.02502 eq. 16; ddpo_pytorch ddim_with_logprob.py; §3.1), r = SNR_t/SNR_t':
 *   s = η σ' √(1 − r),   μ = α' x̂0 + √(σ'² − s²) ε̂;
 * refuses η > η_max = (1 − r)^(−½) of a step, where the root would be negative.
 */
export const ddim: Sampler = (ctx, eta) => {
  const r = snrRatio(ctx)
  const sn = ctx.process.sigma(times(ctx).tn)
  const etaMax = 1 / Math.sqrt(1 - r)
  if (eta > etaMax) {
    const { t, tn } = times(ctx)
    throw new SamplerError({
      sampler: "ddim",
      step: ctx.step,
      message: `ddim: eta ${eta} exceeds the limit ${
        etaMax.toPrecision(6)
      } of step ${ctx.step} (t ${t} → ${tn}); use gddim for more noise`
    })
  }
  const s = eta * sn * Math.sqrt(1 - r)
  return ddimForm(ctx, eta === 0 ? 1 : Math.sqrt(Math.max(0, 1 - eta * eta * (1 - r))), s)
}

/**
 * gDDIM-λ, marginal preserving for any λ ≥ 0 (Zhang et al. 2206.05564; exact OU solution, §3.2):
 *   ρ = r^(λ²/2),   s = σ' √(1 − ρ²),   μ = α' x̂0 + σ' ρ ε̂.
 */
export const gddim: Sampler = (ctx, lambda) => {
  const rho = lambda === 0 ? 1 : snrRatio(ctx) ** ((lambda * lambda) / 2)
  const sn = ctx.process.sigma(times(ctx).tn)
  return ddimForm(ctx, rho, sn * Math.sqrt(Math.max(0, 1 - rho * rho)))
}

/**
 * Flow-GRPO SDE, Euler–Maruyama (2505.05470 eq. 8; flow_grpo sd3_sde_with_logprob.py; §4.1), Δ = σ − σ':
 *   σ_t = a √(σ/(1 − σ)),   μ = x − Δ v̂ − (σ_t² Δ/(2σ)) ε̂,   s = σ_t √Δ.
 */
export const flowGrpo: Sampler = (ctx, level) => {
  requireFlow(ctx, "flow-grpo")
  const { t, tn } = times(ctx)
  const dt = tn - t
  // At σ = 1 the 1/(1 − σ) singularity is replaced by 1/(1 − σ_1), σ_1 the second grid value.
  const st = level * Math.sqrt(t / (1 - (t === 1 ? ctx.grid[1] : t)))
  return meanWithCorrection(ctx, (st * st * dt) / (2 * t), st * Math.sqrt(-dt))
}

/**
 * DanceGRPO SDE (2505.07818; DanceGRPO train_grpo_flux.py flux_step; §5.1), constant diffusion η:
 *   μ = x − Δ v̂ − (η² Δ/(2σ)) ε̂,   s = η √Δ.
 */
export const danceGrpo: Sampler = (ctx, eta) => {
  requireFlow(ctx, "dance-grpo")
  const { t, tn } = times(ctx)
  const dt = tn - t
  return meanWithCorrection(ctx, (eta * eta * dt) / (2 * t), eta * Math.sqrt(-dt))
}

/**
 * Coefficients-preserving sampling (2509.05952; FlowCPS sd3_sde_with_logprob.py; §6.1):
 *   s = σ' sin(ηπ/2),   μ = (1 − σ') x̂0 + σ' cos(ηπ/2) ε̂.
 */
const cpsWith = (logProb: LogProbConvention): Sampler => (ctx, eta) => {
  requireFlow(ctx, "cps")
  const { tn } = times(ctx)
  return ddimForm(ctx, eta === 0 ? 1 : Math.cos((eta * Math.PI) / 2), tn * Math.sin((eta * Math.PI) / 2), logProb)
}
/** CPS with FlowCPS's unnormalized log-prob `−mean (x' − μ)²` (§6.2). */
export const cps: Sampler = cpsWith("unnormalized")
/** CPS with the standard Gaussian log-prob, as in the Precise repository's `cps` mode (§6.2). */
export const cpsGaussian: Sampler = cpsWith("gaussian")

/**
 * Precise (2605.23522; Precise sde_with_logprob.py "precise"; §7.1), = gDDIM at λ = η/√2:
 *   q = σ'(1 − σ)/(σ(1 − σ')),   s = σ' √(1 − q^(η²)),   μ = (1 − σ') x̂0 + σ' q^(η²/2) ε̂.
 */
export const precise: Sampler = (ctx, eta) => {
  requireFlow(ctx, "precise")
  const { t, tn } = times(ctx)
  const q = (tn * (1 - t)) / (t * (1 - tn))
  const rho = eta === 0 ? 1 : q ** ((eta * eta) / 2)
  return ddimForm(ctx, rho, tn * Math.sqrt(Math.max(0, 1 - rho * rho)))
}

/**
 * Dance-precise (Precise sde_with_logprob.py "dance_precise"; §7.1):
 *   ρ = exp(−η²/2 (1/σ' − 1/σ)),   s = σ' √(1 − ρ²),   μ = (1 − σ') x̂0 + σ' ρ ε̂.
 */
export const dancePrecise: Sampler = (ctx, eta) => {
  requireFlow(ctx, "dance-precise")
  const { t, tn } = times(ctx)
  const rho = eta === 0 ? 1 : Math.exp(-0.5 * eta * eta * (1 / Math.max(tn, 1e-6) - 1 / Math.max(t, 1e-6)))
  return ddimForm(ctx, rho, tn * Math.sqrt(Math.min(1, Math.max(0, 1 - rho * rho))))
}

/**
 * How a sampler relates to the marginal-preserving λ-SDE family (§3.3, §7.3):
 *  - "exponential": exact solution of the λ-SDE with x̂0 frozen over the step; keeps the marginals
 *    exactly for point-mass data and converges as steps shrink;
 *  - "euler-maruyama": first-order discretization of a marginal-preserving SDE; its excess noise
 *    (§6.3) vanishes only as steps shrink;
 *  - "fixed-rho": CPS keeps a fixed ρ per step, so it is no discretization of any SDE and stays biased.
 */
export type SamplerFamily = "exponential" | "euler-maruyama" | "fixed-rho"

export interface SamplerInfo {
  readonly sampler: Sampler
  /** What the noise argument means. */
  readonly noise: string
  /** Processes the sampler is defined for. */
  readonly processes: ReadonlyArray<Process["kind"]>
  readonly family: SamplerFamily
  /** The noise level the reference implementation uses by default (where one was found). */
  readonly reference: number
}

export const SAMPLERS = {
  ode: { sampler: ode, noise: "ignored", processes: ["rf", "vp", "ve"], family: "exponential", reference: 0 },
  // DDPO and SDPO sample with DDIM η = 1 (§8, §9.1); gDDIM λ = 1 is the same sampler.
  ddim: {
    sampler: ddim,
    noise: "η of DDIM (≤ its per-step limit)",
    processes: ["rf", "vp", "ve"],
    family: "exponential",
    reference: 1
  },
  gddim: {
    sampler: gddim,
    noise: "λ of gDDIM (any ≥ 0)",
    processes: ["rf", "vp", "ve"],
    family: "exponential",
    reference: 1
  },
  "flow-grpo": {
    sampler: flowGrpo,
    noise: "noise level a",
    processes: ["rf"],
    family: "euler-maruyama",
    reference: 0.7
  },
  "dance-grpo": {
    sampler: danceGrpo,
    noise: "η (constant diffusion)",
    processes: ["rf"],
    family: "euler-maruyama",
    reference: 0.3
  },
  // 0.7: FlowCPS's `sde_step_with_logprob` default and Precise's `_default_noise_level` for cps (§6.1).
  cps: { sampler: cps, noise: "η ∈ [0, 1]", processes: ["rf"], family: "fixed-rho", reference: 0.7 },
  precise: { sampler: precise, noise: "η (= √2·λ)", processes: ["rf"], family: "exponential", reference: 1.5 },
  "dance-precise": { sampler: dancePrecise, noise: "η", processes: ["rf"], family: "exponential", reference: 0.3 }
} as const satisfies Record<string, SamplerInfo>

export type SamplerName = keyof typeof SAMPLERS
export const SAMPLER_NAMES = Object.keys(SAMPLERS) as ReadonlyArray<SamplerName>

/** The sampler of a name, with CPS's log-prob convention chosen (§6.2). */
export const samplerOf = (name: SamplerName, cpsLogProb: LogProbConvention = "unnormalized"): Sampler =>
  name === "cps" && cpsLogProb === "gaussian" ? cpsGaussian : SAMPLERS[name].sampler

/** The log-prob convention `samplerOf(name)` stores, which a policy loss must use too (§6.2). */
export const samplerLogProb = (name: SamplerName, cpsLogProb: LogProbConvention = "unnormalized"): LogProbConvention =>
  name === "cps" ? cpsLogProb : "gaussian"
