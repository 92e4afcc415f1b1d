/**
 * Adjoint matching on a 1-D Gaussian toy with an analytic base (data N(μ, s²), rectified flow) and a
 * small control network g_θ added to it (f_ft = f_base + g_θ): the loop the pipelines run — rollout,
 * reward gradient, adjoint, update — with the same library functions, on a problem with a known answer.
 */
import { type AdjointKind, type CostWeight, type Drift, type TargetAdjoint } from "../../diffusion/adjoint.ts"
import { uniformGrid } from "../../diffusion/grids.ts"
import type { Policy } from "../../diffusion/policy.ts"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { flowGrpo, ode } from "../../diffusion/samplers.ts"
import { initParams, type ParamValues } from "../../engine/params.ts"
import type { TrainState } from "../../engine/train.ts"
import type { LossClipState } from "../../models/adjoint-loss.ts"
import { gaussianData, gaussianDrift } from "../../models/analytic.ts"
import { networkDrift } from "../../models/network-vjp.ts"
import { velocityNet } from "../../models/velocity-net.ts"
import { computeAdjoints } from "../../nodes/adjoint/adjoint.ts"
import { openStream } from "../../random/streams.ts"
import { adjointMatchingUpdate } from "../../training/adjoint-update.ts"
import { latentsAt } from "../../training/adjoints.ts"

export interface ToyProblem {
  /** Base data N(mean, std²). */
  readonly mean: number
  readonly std: number
  /** Reward r(x) = −(x − target)²/2 with multiplier λ. */
  readonly target: number
  readonly lambda: number
  readonly steps: number
}

export const CONTROL_NET = { dim: 1, hidden: 32, blocks: 1, timeFeatures: 8, classes: 0 }

const base = (p: ToyProblem) => ({
  mean: p.mean,
  std: p.std,
  dim: 1,
  process: rectifiedFlow,
  parameterization: "velocity" as const
})

/** The fine-tuned policy f_base + g_θ and its drift (forward and VJP). */
const controlled = async (p: ToyProblem, params: ParamValues) => {
  const b = gaussianData(base(p))
  const bd = gaussianDrift(base(p))
  const g = await networkDrift({ net: CONTROL_NET, params, process: rectifiedFlow, threads: 1 })
  const forward = async (x: Float32Array, batch: number, t: number) => {
    const [fb, fg] = [await b.predict(x, batch, t), await g.forward(x, batch, t)]
    return Float32Array.from(fb, (v, i) => v + fg[i])
  }
  const drift: Drift = {
    forward,
    vjp: async (x, batch, t, v) => {
      const [jb, jg] = [await bd.vjp(x, batch, t, v), await g.vjp(x, batch, t, v)]
      return Float32Array.from(jb, (w, i) => w + jg[i])
    }
  }
  const policy: Policy = { ...b, name: "gaussian + control", predict: forward }
  return { policy, drift, release: g.release }
}

/** Samples of the fine-tuned model: the memoryless SDE (√2) or the ODE, from a fixed evaluation stream. */
export const sampleToy = async (p: ToyProblem, params: ParamValues, deterministic: boolean, chains: number) => {
  const c = await controlled(p, params)
  const r = await rollout({
    policy: c.policy,
    sampler: deterministic ? ode : flowGrpo,
    noise: deterministic ? 0 : Math.SQRT2,
    grid: uniformGrid(p.steps),
    chains,
    initStream: (j) => openStream(["toy-eval", "init", j]),
    stepStream: (j) => openStream(["toy-eval", "step", j])
  })
  await c.release()
  return r.final
}

/** Trains the control for `iterations` rollouts of `chains` trajectories; returns its weights. */
export const trainToy = async (
  p: ToyProblem,
  opts: {
    readonly deterministic: boolean
    readonly iterations: number
    readonly chains: number
    readonly lr: number
    readonly batchSize?: number
    readonly lossClip?: boolean
    readonly targetAdjoint?: TargetAdjoint
    readonly kind?: AdjointKind
    readonly costWeight?: CostWeight
  }
): Promise<ParamValues> => {
  const specs = velocityNet(CONTROL_NET).specs
  const params = initParams(specs, openStream(["toy-control"]))
  const zeros = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, new Float32Array(v.length)]))
  let state: TrainState = { params, m: zeros, v: { ...zeros }, step: 0 }
  let clip: LossClipState | undefined
  for (let it = 0; it < opts.iterations; it++) {
    const c = await controlled(p, state.params)
    const r = await rollout({
      policy: c.policy,
      sampler: opts.deterministic ? ode : flowGrpo,
      noise: opts.deterministic ? 0 : Math.SQRT2,
      grid: uniformGrid(p.steps),
      chains: opts.chains,
      record: true,
      initStream: (j) => openStream(["toy", it, "init", j]),
      stepStream: (j) => openStream(["toy", it, "step", j])
    })
    const adjoints = await computeAdjoints({
      rollout: r,
      // a_N = −λ∇r = λ(x − target)
      terminal: r.final.map((x) => p.lambda * (x - p.target)),
      kind: opts.kind ?? (opts.deterministic ? "value" : "lean"),
      from: 0,
      base: gaussianDrift(base(p)),
      current: c.drift,
      costWeight: opts.costWeight ?? "constant"
    })
    await c.release()
    const out = await adjointMatchingUpdate({
      rollout: r,
      adjoints,
      process: rectifiedFlow,
      baseOutput: async (k) => gaussianData(base(p)).predict(latentsAt(r, k), r.chains, r.steps[k].t),
      request: {
        net: CONTROL_NET,
        residual: true,
        deterministic: opts.deterministic,
        targetAdjoint: opts.targetAdjoint ?? "next",
        costWeight: opts.costWeight ?? "constant",
        lr: opts.lr,
        batchSize: opts.batchSize ?? opts.chains,
        innerEpochs: 1,
        threads: 1,
        lossClip: opts.lossClip ?? true,
        lossClipOrder: "previous",
        // The toys' recipe: gradients clipped at norm 1, full rate from the first step.
        gradClip: 1,
        warmupSteps: 0,
        weightDecay: 0,
        promptDropout: 0
      },
      init: state,
      ...(clip === undefined ? {} : { clip }),
      stream: openStream(["toy", it, "update"])
    })
    // The trainer reuses its buffers two steps later: keep a copy.
    const copy = (v: ParamValues) => Object.fromEntries(Object.entries(v).map(([k, w]) => [k, w.slice()]))
    state = { params: copy(out.state.params), m: copy(out.state.m), v: copy(out.state.v), step: out.state.step }
    clip = out.clip
  }
  return state.params
}

/**
 * The discrete linear-quadratic answer of the deterministic problem: step k maps x to y = A_k x + B_k
 * (the base's Euler step, affine for Gaussian data) plus the control δ; the cost is Σ δ²/(2 s_k²)
 * + λ(x_N − m)²/2 with s_k² = h_k c̄_k (the cost weight's mean over the step). With
 * V_{k+1}(y) = ½P y² + q y the optimum is δ = −s²(P y + q)/(1 + s²P), and V_k follows the Riccati
 * difference equation P_k = A²P/(1 + s²P), q_k = A(P B + q)/(1 + s²P).
 * Returns the optimal control g*_k(x) = δ/b_k and the final mean and variance from x_0 ~ N(0, 1).
 */
/**
 * ∫ c(u) du over a step, the running-cost weight's integral, by Simpson's rule on the weights as docs/algorithms.md
 * §10 defines them (c = 1, or c(u) = 2(1 − u) in flow time): typed here from the definition, not from
 * `runningVariance`, whose closed form the deterministic-am update uses and the Riccati answer must check.
 */
const stepCostWeight = (t: number, tNext: number, weight: CostWeight): number => {
  const c = (u: number) => (weight === "constant" ? 1 : 2 * (1 - u))
  return ((t - tNext) / 6) * (c(tNext) + 4 * c((t + tNext) / 2) + c(t))
}

export const riccati = async (p: ToyProblem, weight: CostWeight = "constant") => {
  const grid = uniformGrid(p.steps)
  const policy = gaussianData(base(p))
  const steps = await Promise.all(Array.from({ length: p.steps }, async (_, k) => {
    const b = grid[k + 1] - grid[k]
    const [f0, f1] = [
      (await policy.predict(Float32Array.of(0), 1, grid[k]))[0],
      (await policy.predict(Float32Array.of(1), 1, grid[k]))[0]
    ]
    const s2 = stepCostWeight(grid[k], grid[k + 1], weight)
    return { A: 1 + b * (f1 - f0), B: b * f0, b, s2, P: 0, q: 0 }
  }))
  let [P, q] = [p.lambda, -p.lambda * p.target]
  for (let k = p.steps - 1; k >= 0; k--) {
    const s = steps[k]
    ;[s.P, s.q] = [P, q]
    ;[P, q] = [(s.A * s.A * P) / (1 + s.s2 * P), (s.A * (P * s.B + q)) / (1 + s.s2 * P)]
  }
  let [mean, variance] = [0, 1]
  for (const s of steps) {
    const c = 1 / (1 + s.s2 * s.P)
    ;[mean, variance] = [c * (s.A * mean + s.B) - c * s.s2 * s.q, c * c * s.A * s.A * variance]
  }
  const control = (k: number, x: number) => {
    const s = steps[k]
    const y = s.A * x + s.B
    return (-s.s2 * (s.P * y + s.q)) / (1 + s.s2 * s.P) / s.b
  }
  return { mean, variance, control, grid }
}
