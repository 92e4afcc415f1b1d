/**
 * adjoint: the adjoint of every rollout trajectory (docs/algorithms.md §10) — the terminal condition
 * a_N = −λ ∇r(x_N) from the reward's gradient, carried backward over the adjoint window [N − K, N]:
 * the lean adjoint of the frozen base model (adjoint matching), or the value adjoint of the current
 * policy (deterministic adjoint matching). Norms per step are metrics; the values go to the update
 * and to the trajectory table's `adjoint` column.
 */
import {
  type AdjointKind,
  adjointRecursion,
  type CostWeight,
  type Drift,
  type FusedLeanAdjoint,
  leanAdjoint,
  runningVariance,
  valueAdjoint
} from "../../diffusion/adjoint.ts"
import type { Rollout } from "../../diffusion/rollout.ts"
import { GraphError } from "../../engine/graph.ts"
import { SessionError } from "../../engine/session.ts"
import { NonFiniteError } from "../../kernel/errors.ts"
import { Node, Port } from "../../kernel/node.ts"
import { networkDrift, networkLeanAdjoint, valueAdjointStep } from "../../models/network-vjp.ts"
import { gradientProblems, rewardGradient } from "../../rewards/gradients.ts"
import { RewardSpecError } from "../../rewards/rewards.ts"
import { type Adjoints, latentsAt, rowNorms } from "../../training/adjoints.ts"
import { rewardOf, targetOf } from "../rl/config.ts"
import { currentParams, type Trajectories } from "../rl/rollout.ts"
import type { RlState } from "../rl/state.ts"
import type { BaseModel } from "../setup/base-model.ts"
import type { RewardClassifier } from "../setup/reward-classifier.ts"
import { type AmConfig, windowStart } from "./config.ts"

/** Whether every value is finite: v·0 is 0 for finite v and NaN otherwise, so one sum tells (no calls). */
const allFinite = (values: Float32Array) => {
  let probe = 0
  for (let i = 0; i < values.length; i++) probe += values[i] * 0
  return probe === 0
}

const checkFinite = (values: Float32Array, d: number, what: string) => {
  if (allFinite(values)) return
  const bad = values.findIndex((v) => !Number.isFinite(v))
  throw new NonFiniteError({
    message: `${what} is ${values[bad]} for trajectory ${Math.floor(bad / d)} (element ${bad % d})`
  })
}

/**
 * The adjoints of a recorded rollout from its terminal condition: lean (base Jacobian) or value
 * (current policy, running cost with s_k² = h_k c̄_k of the cost weight).
 */
export const computeAdjoints = async (opts: {
  readonly rollout: Rollout
  readonly terminal: Float32Array
  readonly kind: AdjointKind
  readonly from: number
  readonly base: Drift
  /** The current policy's drift (value adjoint only). */
  readonly current?: Drift
  /** The value adjoint's step in one pass (models/network-vjp.ts `valueAdjointStep`), used when given. */
  readonly fusedValueStep?: (
    k: number,
    x: Float32Array,
    next: Float32Array
  ) => Promise<{ readonly adjoint: Float32Array; readonly fBase: Float32Array }>
  readonly costWeight?: CostWeight
  /** The base's lean recursion in one pass per lane (models/network-vjp.ts `networkLeanAdjoint`), used when given. */
  readonly fusedLean?: FusedLeanAdjoint
}): Promise<Adjoints> => {
  const r = opts.rollout
  checkFinite(opts.terminal, r.d, "the terminal adjoint −λ∇r(x_N)")
  const baseOutputs: Array<Float32Array> = new Array(r.steps.length - opts.from)
  const spec = {
    steps: r.steps,
    latent: (k: number) => latentsAt(r, k),
    batch: r.chains,
    terminal: opts.terminal,
    from: opts.from,
    baseOutput: (k: number, f: Float32Array) => void (baseOutputs[k - opts.from] = f)
  }
  const variance = (k: number) => runningVariance(r.steps[k].t, r.steps[k].tNext, opts.costWeight ?? "constant")
  const values = opts.kind === "value" && opts.fusedValueStep !== undefined
    ? await adjointRecursion(spec, async (k, x, next) => {
      const out = await opts.fusedValueStep!(k, x, next)
      spec.baseOutput(k, out.fBase)
      return out.adjoint
    })
    : opts.kind === "lean"
    ? await leanAdjoint({
      ...spec,
      vjp: opts.base.vjp,
      ...(opts.base.forwardVjp === undefined ? {} : { forwardVjp: opts.base.forwardVjp }),
      ...(opts.fusedLean === undefined ? {} : { fused: opts.fusedLean })
    })
    : await valueAdjoint({
      ...spec,
      current: opts.current ?? opts.base,
      base: opts.base,
      variance
    })
  values.forEach((a, i) => checkFinite(a, r.d, `the adjoint of step ${opts.from + i}`))
  const recorded = baseOutputs.length > 0 && baseOutputs.every((f) => f !== undefined)
  return { from: opts.from, chains: r.chains, values, ...(recorded ? { baseOutputs } : {}) }
}

/**
 * f_base(x_k) of every chain at step k with the bits the adjoint node's f_base had (the lean adjoint's
 * step-wise VJP pass, whose forward equals the fused recursion's bit for bit — tested; or the fused
 * value-adjoint step), so a replay from stored adjoints, which carry no base outputs, trains on the same
 * numbers. Returns the function and the release of its sessions.
 */
export const baseOutputsFor = async (opts: {
  readonly rollout: Rollout
  readonly kind: AdjointKind
  readonly base: BaseModel
  readonly condition?: Int32Array | undefined
  readonly threads: number
}) => {
  const r = opts.rollout
  const zeros = new Float32Array(r.chains * r.d)
  const condition = opts.condition === undefined ? {} : { condition: opts.condition }
  if (opts.kind === "value") {
    const fused = await valueAdjointStep({ ...opts.base, base: opts.base.params, threads: opts.threads })
    const output = async (k: number) =>
      (await fused({
        params: opts.base.params,
        x: latentsAt(r, k),
        batch: r.chains,
        t: r.steps[k].t,
        next: zeros,
        a: 0,
        b: 0,
        variance: 1,
        ...condition
      })).fBase
    return { output, release: () => Promise.resolve() }
  }
  const drift = await networkDrift({ ...opts.base, frozen: true, threads: opts.threads, ...condition })
  const output = async (k: number) => (await drift.forwardVjp!(latentsAt(r, k), r.chains, r.steps[k].t, zeros)).f
  return { output, release: drift.release }
}

const scaled = (v: Float32Array, c: number) => {
  const out = new Float32Array(v.length)
  for (let i = 0; i < v.length; i++) out[i] = c * v[i]
  return out
}

/** Why a config's reward has no gradient (an ONNX term with an op the engine cannot import), per term. */
export const rewardGradientProblems = (c: Pick<AmConfig, "reward" | "dataset" | "task">): Array<string> =>
  gradientProblems(rewardOf(c), c.dataset, c.dataset === "mnist" ? 784 : 2)

/** Mean ‖a_k‖ over the chains at every step of the window (k = N: the terminal condition). */
const norms = (a: Adjoints) => {
  const out: Record<string, number> = {}
  a.values.forEach((v, i) => {
    out[`adjoint_norm.s${a.from + i}`] = rowNorms(v, a.chains, v.length / a.chains).reduce((x, y) => x + y, 0) /
      a.chains
  })
  return out
}

/** ∇r at the trajectories' final samples, from the config's reward (the classifier's ONNX graph where it scores). */
const terminalGradient = async (
  trajectories: Trajectories,
  classifier: RewardClassifier | undefined,
  config: AmConfig
) => {
  const r = trajectories.rollout
  const gradient = await rewardGradient({
    spec: rewardOf(config),
    dataset: config.dataset,
    dim: r.d,
    ...(classifier === undefined ? {} : { classifier: { onnx: classifier.onnx, classes: classifier.net.classes } }),
    target: targetOf(config),
    tilt: config.task === "tilt",
    threads: config.threads
  })
  const g = await gradient.gradient({
    dataset: config.dataset,
    samples: r.final,
    count: r.chains,
    dim: r.d,
    condition: trajectories.prompts.condition
  })
  await gradient.release()
  return g
}

export const adjoint = (variant: { readonly kind: (c: AmConfig) => AdjointKind }) =>
  Node.make({
    name: "adjoint",
    doc: "the adjoint of every trajectory over the window: a_N = −λ∇r(x_N) carried backward (lean or value)",
    inputs: {
      trajectories: Port.of<Trajectories>(),
      base: Port.of<BaseModel>(),
      state: Port.of<RlState | null>(),
      classifier: Port.of<RewardClassifier | undefined>(),
      config: Port.of<AmConfig>()
    },
    run: ({ trajectories, base, state, classifier, config }) =>
      Node.promise([NonFiniteError, RewardSpecError, SessionError, GraphError], async () => {
        const r = trajectories.rollout
        const condition = base.net.classes > 0 ? trajectories.prompts.condition : undefined
        const g = await terminalGradient(trajectories, classifier, config)
        const kind = variant.kind(config)
        const drift = (params: BaseModel["params"], frozen: boolean) =>
          networkDrift({ ...base, params, frozen, threads: config.threads, condition })
        const baseDrift = await drift(base.params, true)
        const fused = kind === "value"
          ? await valueAdjointStep({ ...base, base: base.params, threads: config.threads })
          : undefined
        const params = currentParams(state, base)
        const weight = config.costWeight ?? "constant"
        return await computeAdjoints({
          rollout: r,
          terminal: scaled(g, -config.lambda),
          kind,
          from: windowStart(config),
          base: baseDrift,
          costWeight: weight,
          ...(kind === "lean"
            ? {
              fusedLean: networkLeanAdjoint({ ...base, threads: config.threads, condition })
            }
            : {}),
          ...(fused === undefined ? {} : {
            fusedValueStep: (k, x, next) => {
              const { a, b, t, tNext } = r.steps[k]
              const variance = runningVariance(t, tNext, weight)
              return fused({ params, x, batch: r.chains, t, next, a, b, variance, condition })
            }
          })
        })
      }),
    metrics: norms
  })
