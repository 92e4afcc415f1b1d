/**
 * The contract every sampler passes, parametrised over the registry and the processes it supports
 * (like diffusers' scheduler contract tests). Closed-form values are computed here from the formulas.
 */
import { describe, expect, it } from "vitest"
import { lambdaMoments } from "../../diffusion/gaussian-theory.ts"
import { leadingGrid, shiftGrid, uniformGrid } from "../../diffusion/grids.ts"
import { transitionLogProb } from "../../diffusion/logprob.ts"
import { gaussianSamplerMoments } from "../../diffusion/moments.ts"
import {
  alphaBars,
  type Parameterization,
  type Process,
  rectifiedFlow,
  veBrownian,
  vpContinuous,
  vpDiscrete
} from "../../diffusion/process.ts"
import { rollout } from "../../diffusion/rollout.ts"
import {
  cps,
  danceGrpo,
  ddim,
  flowGrpo,
  gddim,
  ode,
  precise,
  SAMPLER_NAMES,
  type SamplerName,
  SAMPLERS,
  type StepContext
} from "../../diffusion/samplers.ts"
import { gaussianData } from "../../models/analytic.ts"
import { openStream } from "../../random/streams.ts"

interface Setup {
  readonly label: string
  readonly process: Process
  readonly parameterization: Parameterization
  readonly grid: (n: number) => Array<number>
}

const SETUPS: ReadonlyArray<Setup> = [
  {
    label: "rectified flow (velocity, shifted grid)",
    process: rectifiedFlow,
    parameterization: "velocity",
    grid: (n) => shiftGrid(uniformGrid(n), 3)
  },
  {
    label: "VP scaled-linear (ε, DDIM leading grid)",
    process: vpDiscrete("scaled-linear"),
    parameterization: "epsilon",
    grid: (n) => leadingGrid(n)
  },
  {
    label: "VP β(t) = t (ε)",
    process: vpContinuous("vp-beta-t", (t) => Math.exp((-t * t) / 2)),
    parameterization: "epsilon",
    grid: (n) => uniformGrid(n, 3, 0)
  },
  { label: "VE σ² = t (x0)", process: veBrownian, parameterization: "x0", grid: (n) => uniformGrid(n, 4, 0) }
]

/** A noise level each sampler accepts on every step of these grids. */
const NOISE: Record<SamplerName, number> = {
  ode: 0,
  ddim: 0.8,
  gddim: 1.5,
  "flow-grpo": 0.7,
  "dance-grpo": 0.3,
  cps: 0.5,
  precise: 1.5,
  "dance-precise": 0.3
}

const cases = SAMPLER_NAMES.flatMap((name) =>
  SETUPS.filter((s) => (SAMPLERS[name].processes as ReadonlyArray<string>).includes(s.process.kind)).map((setup) => ({
    name,
    setup
  }))
)

const ctxOf = (setup: Setup, grid: ReadonlyArray<number>, step: number): StepContext => ({
  process: setup.process,
  parameterization: setup.parameterization,
  grid,
  step
})

describe.each(cases)("sampler $name on $setup.label", ({ name, setup }) => {
  const { sampler } = SAMPLERS[name]
  const grid = setup.grid(20)
  const policy = gaussianData({
    mean: 0.5,
    std: 0.8,
    dim: 3,
    process: setup.process,
    parameterization: setup.parameterization
  })

  it("takes exactly the ODE step when its noise level is 0", () => {
    for (let k = 0; k < 20; k++) {
      const t0 = sampler(ctxOf(setup, grid, k), 0)
      const e = ode(ctxOf(setup, grid, k), 0)
      expect([t0.a, t0.b, t0.s]).toEqual([e.a, e.b, 0])
    }
  })

  it("is deterministic exactly where its std is 0, and never has a negative or NaN std", () => {
    for (let k = 0; k < 20; k++) {
      const t = sampler(ctxOf(setup, grid, k), NOISE[name])
      expect(t.s >= 0 && Number.isFinite(t.a) && Number.isFinite(t.b)).toBe(true)
      if (name !== "ode" && setup.process.sigma(grid[k + 1]) > 1e-3) expect(t.s).toBeGreaterThan(0)
    }
  })

  // The log-prob here is recomputed with the rollout's own formula (transitionLogProb), so what this checks is
  // the record — the stored latents, (a, b, s) and log-prob belong to one transition, and the model output
  // re-evaluated at the stored state is the one sampled with — not the formula, which
  // test/rl/stored-logprob.test.ts checks against the training graph's independent arithmetic.
  it(
    "records each transition whole: its stored states, (a, b, s) and model output give its stored log-prob",
    async () => {
      const r = await rollout({
        policy,
        sampler,
        noise: NOISE[name],
        grid,
        chains: 16,
        record: true,
        initStream: (j) => openStream(["lp", "init", j]),
        stepStream: (j) => openStream(["lp", "step", j])
      })
      const n = 16 * 3
      let compared = 0
      for (const st of r.steps) {
        const x = r.latents!.subarray(st.step * n, (st.step + 1) * n)
        const xNext = r.latents!.subarray((st.step + 1) * n, (st.step + 2) * n)
        const f = await policy.predict(Float32Array.from(x), 16, st.t)
        for (let j = 0; j < 16; j++) {
          const recomputed = transitionLogProb(xNext, x, f, j * 3, 3, st.a, st.b, st.s, st.logProb)
          const sampled = r.logProb[st.step * 16 + j]
          if (st.s === 0) expect(Number.isNaN(sampled) && Number.isNaN(recomputed)).toBe(true)
          else {
            expect(Math.exp(recomputed - sampled)).toBe(1)
            compared++
          }
        }
      }
      if (name !== "ode") expect(compared).toBeGreaterThan(0)
    }
  )

  it("gives the first chain the same bits whether it samples 1 chain or 1,000", async () => {
    const spec = {
      policy,
      sampler,
      noise: NOISE[name],
      grid: setup.grid(6),
      initStream: (j: number) => openStream(["bi", "init", j]),
      stepStream: (j: number) => openStream(["bi", "step", j])
    }
    const one = await rollout({ ...spec, chains: 1 })
    const many = await rollout({ ...spec, chains: 1000 })
    expect(Array.from(many.final.subarray(0, 3))).toEqual(Array.from(one.final))
    expect(many.logProb[0]).toEqual(one.logProb[0])
  })

  it(
    "produces samples whose mean and variance match its exact moment propagation within Monte-Carlo error",
    async () => {
      const chains = 4000
      const r = await rollout({
        policy,
        sampler,
        noise: NOISE[name],
        grid,
        chains,
        initStream: (j) => openStream(["mc", "init", j]),
        stepStream: (j) => openStream(["mc", "step", j])
      })
      const exact = gaussianSamplerMoments({
        process: setup.process,
        parameterization: setup.parameterization,
        sampler,
        noise: NOISE[name],
        grid,
        mean: 0.5,
        std: 0.8
      })
      const xs = Float64Array.from(r.final)
      const m = xs.reduce((a, b) => a + b, 0) / xs.length
      const v = xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)
      // 3 coordinates × 4,000 chains are i.i.d. draws of the sampler's output distribution.
      expect(Math.abs(m - exact.mean)).toBeLessThan(5 * Math.sqrt(exact.variance / xs.length))
      expect(Math.abs(v - exact.variance)).toBeLessThan(5 * exact.variance * Math.sqrt(2 / xs.length))
    }
  )

  const family = SAMPLERS[name].family
  const moments = (n: number) =>
    gaussianSamplerMoments({
      process: setup.process,
      parameterization: setup.parameterization,
      sampler,
      noise: NOISE[name],
      grid: setup.grid(n),
      mean: 0.5,
      std: 0.8
    })
  if (family === "exponential" && setup.process.kind === "rf") {
    it("preserves the data marginals: its exact terminal moments converge to N(μ0, s0²) as steps grow", () => {
      const err = (n: number) => Math.abs(moments(n).mean - 0.5) + Math.abs(moments(n).variance - 0.64)
      const errors = [10, 50, 200, 1000, 5000].map(err)
      for (let i = 1; i < errors.length; i++) expect(errors[i]).toBeLessThan(errors[i - 1])
      expect(errors[4]).toBeLessThan(5e-3)
    })
  }
  if (family === "euler-maruyama") {
    it(
      "has an Euler–Maruyama error that shrinks as steps grow (down to the floor of Flow-GRPO's first-step rule)",
      () => {
        const err = (n: number) => Math.abs(moments(n).mean - 0.5) + Math.abs(moments(n).variance - 0.64)
        expect(err(50)).toBeLessThan(err(10))
        expect(err(200)).toBeLessThan(err(50))
        expect(err(5000)).toBeLessThan(2e-3)
      }
    )
  }
  if (
    (name === "ode" || name === "gddim") && setup.process.kind !== "rf" && setup.process.name !== "vp-scaled-linear"
  ) {
    it("converges to the closed-form output of the continuous λ-sampler (§3.5) as steps grow", () => {
      const T = setup.grid(1)[0]
      const limit = lambdaMoments(
        { process: setup.process.kind as "ve" | "vp", T, mu0: 0.5, s0: 0.8 },
        name === "ode" ? 0 : NOISE[name]
      )
      const err = (n: number) => Math.abs(moments(n).mean - limit.mean) + Math.abs(moments(n).variance - limit.variance)
      const errors = [100, 1000, 20_000].map(err)
      expect(errors[1]).toBeLessThan(errors[0])
      expect(errors[2]).toBeLessThan(errors[1])
      expect(errors[2]).toBeLessThan(5e-3)
    })
  }
})

describe("sampler identities", () => {
  const vp = vpDiscrete("scaled-linear")
  const vpGrid = leadingGrid(50)
  const ctx = (
    step: number,
    process: Process = vp,
    grid: ReadonlyArray<number> = vpGrid,
    parameterization: Parameterization = "epsilon"
  ): StepContext => ({ process, parameterization, grid, step })

  it("gDDIM λ = 1 equals DDIM η = 1 and λ = 0 equals DDIM η = 0", () => {
    for (let k = 0; k < 50; k++) {
      const g1 = gddim(ctx(k), 1)
      const d1 = ddim(ctx(k), 1)
      expect(g1.a).toBeCloseTo(d1.a, 12)
      expect(g1.b).toBeCloseTo(d1.b, 12)
      expect(g1.s).toBeCloseTo(d1.s, 12)
      const g0 = gddim(ctx(k), 0)
      const d0 = ddim(ctx(k), 0)
      expect([g0.a, g0.b, g0.s]).toEqual([d0.a, d0.b, d0.s])
    }
  })

  it("DDIM-η matches the diffusers formula: s = η√var1, μ = √ᾱ' x̂0 + √(1 − ᾱ' − s²) ε̂", () => {
    const ab = alphaBars("scaled-linear")
    for (const k of [0, 10, 48, 49]) {
      const [t, tn] = [vpGrid[k], vpGrid[k + 1]]
      const var1 = ((1 - ab[tn]) / (1 - ab[t])) * (1 - ab[t] / ab[tn])
      const s = 0.9 * Math.sqrt(var1)
      const c = Math.sqrt(1 - ab[tn] - s * s)
      // ε-prediction: x̂0 = (x − √(1−ᾱ) ε)/√ᾱ, ε̂ = ε
      const a = Math.sqrt(ab[tn]) / Math.sqrt(ab[t])
      const b = -Math.sqrt(ab[tn]) * Math.sqrt(1 - ab[t]) / Math.sqrt(ab[t]) + c
      const tr = ddim(ctx(k), 0.9)
      expect(tr.a).toBeCloseTo(a, 12)
      expect(tr.b).toBeCloseTo(b, 12)
      expect(tr.s).toBeCloseTo(s, 14)
    }
  })

  it(
    "DDIM-η above its per-step limit fails and names the step (SD schedule, 50 steps: t 21 → 1, η_max ≈ 1.0456)",
    () => {
      expect(() => {
        for (let k = 0; k < 50; k++) ddim(ctx(k), 1.05)
      }).toThrow(/limit 1\.045\d+ of step 48 \(t 21 → 1\)/)
      expect(() => {
        for (let k = 0; k < 50; k++) ddim(ctx(k), 1.04)
      }).not.toThrow()
    }
  )

  it("Precise with level η is gDDIM with λ = η/√2 on rectified flow", () => {
    const grid = uniformGrid(10)
    for (let k = 0; k < 10; k++) {
      const p = precise(ctx(k, rectifiedFlow, grid, "velocity"), 1.5)
      const g = gddim(ctx(k, rectifiedFlow, grid, "velocity"), 1.5 / Math.SQRT2)
      expect(p.a).toBeCloseTo(g.a, 12)
      expect(p.b).toBeCloseTo(g.b, 12)
      expect(p.s).toBeCloseTo(g.s, 12)
    }
  })

  it("CPS with η = 1 re-noises fully: μ = (1 − σ') x̂0 and s = σ'", () => {
    const grid = uniformGrid(10)
    const k = 3
    const [sg, sn] = [grid[k], grid[k + 1]]
    const t = cps(ctx(k, rectifiedFlow, grid, "velocity"), 1)
    // velocity: x̂0 = x − σ v
    expect(t.a).toBeCloseTo(1 - sn, 12)
    expect(t.b).toBeCloseTo(-(1 - sn) * sg, 12)
    expect(t.s).toBeCloseTo(sn, 14)
    expect(t.logProb).toBe("unnormalized")
  })

  it("CPS at every step and level is FlowCPS's step (sd3_sde_with_logprob.py lines 52–55)", () => {
    // FlowCPS typed out: std = σ' sin(ηπ/2); x̂0 = x − σv; x̂1 = x + v(1 − σ);
    // mean = x̂0(1 − σ') + x̂1 √(σ'² − std²) — read as a·x + b·v.
    const grid = uniformGrid(10)
    for (const eta of [0.3, 0.7, 0.9]) {
      for (let k = 0; k < 10; k++) {
        const [sg, sn] = [grid[k], grid[k + 1]]
        const std = sn * Math.sin((eta * Math.PI) / 2)
        const root = Math.sqrt(sn * sn - std * std)
        const t = cps(ctx(k, rectifiedFlow, grid, "velocity"), eta)
        expect(t.s).toBeCloseTo(std, 14)
        expect(t.a).toBeCloseTo((1 - sn) + root, 12)
        expect(t.b).toBeCloseTo(-sg * (1 - sn) + (1 - sg) * root, 12)
      }
    }
  })

  it("Flow-GRPO's first step at σ = 1 uses the second grid value in place of the singular 1/(1 − σ)", () => {
    const grid = uniformGrid(10)
    const t = flowGrpo(ctx(0, rectifiedFlow, grid, "velocity"), 0.7)
    const st = 0.7 * Math.sqrt(1 / (1 - grid[1]))
    expect(t.s).toBeCloseTo(st * Math.sqrt(1 - grid[1]), 14)
  })

  it("GRPO-Guard's step weight |b| is Precise's grpo_guard Jacobian |∂μ/∂v̂| at every step (§4.5)", () => {
    // Precise's grpo_guard typed out, with its compute_std_dev_t: dt = σ' − σ; flow_grpo std = η √(σ/(1 − σ̃)) √−dt
    // (σ̃ = the second grid value where σ = 1), dance std = η √−dt, cps std = σ' sin(ηπ/2);
    // flow_grpo/dance J = dt − ½ std² (1 − σ)/σ; cps J = −σ(1 − σ') + (1 − σ) √(σ'² − std²).
    const grid = shiftGrid(uniformGrid(10), 3)
    const cases = [
      {
        sampler: flowGrpo,
        eta: 0.7,
        std: (sg: number, dt: number) => 0.7 * Math.sqrt(sg / (1 - (sg === 1 ? grid[1] : sg))) * Math.sqrt(-dt)
      },
      { sampler: danceGrpo, eta: 0.3, std: (_: number, dt: number) => 0.3 * Math.sqrt(-dt) }
    ]
    for (let k = 0; k < 10; k++) {
      const [sg, sn] = [grid[k], grid[k + 1]]
      const dt = sn - sg
      for (const { sampler, eta, std } of cases) {
        const s = std(sg, dt)
        const t = sampler(ctx(k, rectifiedFlow, grid, "velocity"), eta)
        expect(t.s).toBeCloseTo(s, 12)
        expect(Math.abs(t.b)).toBeCloseTo(Math.abs(dt - 0.5 * s * s * ((1 - sg) / sg)), 12)
      }
      const s = sn * Math.sin((0.7 * Math.PI) / 2)
      const jCps = -sg * (1 - sn) + (1 - sg) * Math.sqrt(Math.max(sn * sn - s * s, 0))
      expect(Math.abs(cps(ctx(k, rectifiedFlow, grid, "velocity"), 0.7).b)).toBeCloseTo(Math.abs(jCps), 12)
    }
  })

  it("log-prob: 'sum' is d × 'mean', and FlowCPS's convention is −mean (x' − μ)²", () => {
    const x = [0.1, -0.3, 0.7], f = [0.2, 0.1, -0.5], xn = [0.05, -0.2, 0.9]
    const mean = transitionLogProb(xn, x, f, 0, 3, 0.9, -0.1, 0.3, "gaussian", "mean")
    const sum = transitionLogProb(xn, x, f, 0, 3, 0.9, -0.1, 0.3, "gaussian", "sum")
    expect(sum).toBeCloseTo(3 * mean, 12)
    const sq = xn.reduce((acc, v, i) => acc + (v - (0.9 * x[i] - 0.1 * f[i])) ** 2, 0)
    expect(mean).toBeCloseTo(-sq / (3 * 2 * 0.09) - Math.log(0.3) - 0.5 * Math.log(2 * Math.PI), 12)
    expect(transitionLogProb(xn, x, f, 0, 3, 0.9, -0.1, 0.3, "unnormalized")).toBeCloseTo(-sq / 3, 14)
    expect(Number.isNaN(transitionLogProb(xn, x, f, 0, 3, 0.9, -0.1, 0, "gaussian"))).toBe(true)
  })
})
