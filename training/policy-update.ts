/**
 * The policy update's loop (docs/algorithms.md §12.9): optimizer steps through the engine's AdamW on the
 * rows an update plan partitions into minibatches, the EMA of the weights, and the metrics a run reports.
 * No Effect here: nodes/rl/update.ts is the stage that calls it.
 */
import type { ParamValues } from "../engine/params.ts"
import { DEFAULT_ADAM } from "../engine/train-step.ts"
import { emaDecay, Trainer, type TrainState } from "../engine/train.ts"
import { velocityNet, type VelocityNetConfig } from "../models/velocity-net.ts"
import type { RandomStream } from "../random/streams.ts"
import {
  rescore,
  type RolloutBatch,
  type Row,
  rowFeeds,
  type RowScratch,
  type RowTables,
  storedLogProbs,
  storedMeans,
  type UpdatePlan
} from "./policy-batches.ts"
import { copyOf, type PolicyState, startState } from "./train-state.ts"
import type { UpdateRequest } from "./update-request.ts"

/**
 * One EMA update after optimizer step n (1-based), flow_grpo's EMAModuleWrapper (flow_grpo/ema.py):
 * every `interval` steps ((n + 1) % interval = 0), ema ← ema + (1 − d)(θ − ema) with the warm-up
 * decay d = min((1 + n)/(10 + n), decay). Updates `ema` in place; returns whether it changed.
 */
export const emaStep = (
  ema: Record<string, Float32Array>,
  params: Record<string, Float32Array>,
  n: number,
  decay: number,
  interval: number
): boolean => {
  if ((n + 1) % interval !== 0) return false
  const rate = 1 - emaDecay(n, decay)
  for (const [k, e] of Object.entries(ema)) {
    const p = params[k]
    for (let i = 0; i < e.length; i++) e[i] += rate * (p[i] - e[i])
  }
  return true
}

const newStats = () => ({
  ratioSum: 0,
  ratioMin: Infinity,
  ratioMax: -Infinity,
  approxKl: 0,
  clipped: 0,
  rows: 0,
  gradNorm: 0,
  loss: 0,
  kl: 0,
  steps: 0,
  firstDeviation: Number.NaN,
  lpDeviation: Number.NaN,
  /** Σ ratio and rows per trained step index: GRPO-Guard's diagnostic (the ratio's left shift by step). */
  byStep: new Map<number, { sum: number; rows: number }>()
})

/** The trainer's state after the update, the EMA when one runs, and the update's metrics. */
export interface PolicyUpdate {
  readonly trained: TrainState
  readonly ema: ParamValues | undefined
  readonly metrics: Readonly<Record<string, number>>
}

/** One optimizer step's rows into the statistics: importance ratios, clipped rows, approximate KL, loss. */
const record = (
  stats: ReturnType<typeof newStats>,
  r: {
    readonly loss: number
    readonly gradNorm: number
    readonly metrics: Readonly<Record<string, number>>
    readonly extra: Record<string, { data: unknown }>
  },
  lpo: Float64Array,
  rows: ReadonlyArray<Row>,
  clipRange: number
) => {
  const ratio = r.extra.ratio.data as Float32Array
  const lp = r.extra.lp.data as Float64Array
  for (let q = 0; q < ratio.length; q++) {
    const step = stats.byStep.get(rows[q][1]) ?? { sum: 0, rows: 0 }
    stats.byStep.set(rows[q][1], { sum: step.sum + ratio[q], rows: step.rows + 1 })
    stats.ratioSum += ratio[q]
    stats.ratioMin = Math.min(stats.ratioMin, ratio[q])
    stats.ratioMax = Math.max(stats.ratioMax, ratio[q])
    if (Math.abs(ratio[q] - 1) > clipRange) stats.clipped++
    stats.approxKl += 0.5 * (lp[q] - lpo[q]) ** 2
  }
  stats.rows += ratio.length
  stats.gradNorm += r.gradNorm
  stats.loss += r.loss
  stats.kl += r.metrics.kl ?? 0
  stats.steps++
}

/** The first step runs at θ_old: its ratios' distance from 1, and the loss graph's log-probs against the sampler's. */
const onPolicyCheck = (
  stats: ReturnType<typeof newStats>,
  r: { readonly extra: Record<string, { data: unknown }> },
  rows: ReadonlyArray<Row>,
  lpOld: Float64Array,
  steps: number
) => {
  const lp = r.extra.lp.data as Float64Array
  stats.firstDeviation = (r.extra.ratio.data as Float32Array).reduce((m, v) => Math.max(m, Math.abs(v - 1)), 0)
  stats.lpDeviation = rows.reduce((m, [j, k], q) => Math.max(m, Math.abs(lp[q] - lpOld[j * steps + k])), 0)
}

/**
 * The optimizer steps of one iteration: for each inner epoch, the plan's minibatches of rows, one AdamW
 * step each (from `state`, or the base's weights before the first update), the EMA after each, and the
 * on-policy diagnostics of the first step.
 */
export const runUpdates = async (
  plan: UpdatePlan,
  tr: RolloutBatch,
  state: PolicyState | null,
  base: { readonly net: VelocityNetConfig; readonly params: ParamValues },
  config: UpdateRequest,
  rng: RandomStream
): Promise<PolicyUpdate> => {
  if (tr.trainable.length === 0) throw new Error(`${plan.name}: no stochastic step to train (noise level 0?)`)
  const specs = velocityNet(base.net).specs
  const conditional = base.net.classes > 0
  const init = startState(state, base.params)
  const trainer = await Trainer.create({
    name: plan.name,
    specs,
    loss: plan.loss,
    threads: config.threads,
    optimization: "basic",
    sessionKey: `${plan.name}|${JSON.stringify(plan.lossKey)}`,
    adam: { ...DEFAULT_ADAM, lr: config.lr, weightDecay: config.weightDecay, maxGradNorm: 1 },
    init,
    // The previous iteration's state is superseded by this update's (its checkpoint holds a copy).
    donate: state !== null
  })
  const ref = plan.lossKey.beta > 0
    ? Object.fromEntries(specs.map((sp) => [`ref.${sp.name}`, { data: base.params[sp.name], dims: sp.shape }]))
    : {}
  const steps = tr.steps
  let tables: RowTables = {
    lpOld: storedLogProbs(tr),
    muOld: plan.lossKey.rationorm === true ? storedMeans(tr) : undefined,
    // Δ in model time (σ for flows, t/1000 for discrete VP): flow_grpo's code KL is Δ × the paper's.
    klScale: plan.lossKey.beta > 0
      ? (k) => (config.klForm === "code" ? tr.process.modelTime(steps[k].t) - tr.process.modelTime(steps[k].tNext) : 1)
      : undefined
  }
  // The EMA starts at the weights training starts from (flow_grpo clones them), and is the trainer's own copy.
  const ema = config.ema > 0 ? copyOf(state?.ema ?? init.params) : undefined
  const stats = newStats()
  const scratch: RowScratch = new Map()
  for (let epoch = 0; epoch < config.innerEpochs; epoch++) {
    const batches = plan.partition(epoch, rng.child("epoch", epoch))
    if (epoch === 0 && config.rescoreOldLogProb) {
      tables = await rescore(plan, tr, batches, tables, init.params, config, conditional)
    }
    for (const mb of batches) {
      const feeds = rowFeeds(tr, mb, plan.values, tables, conditional, scratch)
      const r = await trainer.step({ ...feeds, ...ref })
      if (stats.steps === 0) onPolicyCheck(stats, r, mb, tables.lpOld, steps.length)
      record(stats, r, feeds.lp_old.data as Float64Array, mb, config.clipRange)
      if (ema !== undefined) emaStep(ema, trainer.state.params, trainer.state.step, config.ema, config.emaInterval)
    }
  }
  const trained = trainer.state
  await trainer.release()
  return { trained, ema, metrics: summary(stats, plan.lossKey.beta > 0) }
}

const summary = (stats: ReturnType<typeof newStats>, kl: boolean) => ({
  ratio_mean: stats.ratioSum / stats.rows,
  ratio_min: stats.ratioMin,
  ratio_max: stats.ratioMax,
  first_step_ratio_deviation: stats.firstDeviation,
  logprob_deviation: stats.lpDeviation,
  clipfrac: stats.clipped / stats.rows,
  approx_kl: stats.approxKl / stats.rows,
  grad_norm: stats.gradNorm / stats.steps,
  policy_loss: stats.loss / stats.steps,
  ...(kl ? { kl: stats.kl / stats.steps } : {}),
  optimizer_steps: stats.steps,
  trained_rows: stats.rows,
  ...Object.fromEntries(
    [...stats.byStep].sort(([a], [b]) => a - b).map(([k, v]) => [`ratio_mean.step${k}`, v.sum / v.rows])
  )
})
