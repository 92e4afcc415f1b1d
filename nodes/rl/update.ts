/**
 * Policy updates through the engine's AdamW, on rows (trajectory j, step k) of the trained steps:
 *  - policyUpdate: PPO-clip (+ KL to the base model), DDPO / GRPO family (docs/algorithms.md §4.2,
 *    §8, §12.9). Each inner epoch shuffles trajectories and takes one optimizer step per minibatch
 *    of `batchSize` trajectories over all their trained steps — the gradient the references
 *    accumulate over `grad_accum × trained steps` micro-steps, computed as one batch.
 *  - pairedUpdate: SDPO's reward-difference regression (§9.4) with step-shuffled minibatches
 *    (§9.5): each pair gets its own permutation of the steps, and the optimizer step at position j
 *    mixes different actual steps across pairs.
 * Both are one factory (`updateNode`) with its own loss, minibatch partition and row values.
 *
 * The old log-prob of a row is the one the sampler stored at rollout time, as in every reference
 * (flow_grpo, ddpo-pytorch, sdpo store `log_probs` while sampling). The first optimizer step runs
 * at θ_old, so its graph log-probs against the stored ones are a free check of the on-policy
 * invariant (`logprob_deviation`). `rescoreOldLogProb` re-computes them with the loss's own graph
 * instead (a diagnosis: the first ratio is then exactly 1).
 *
 * Trained steps (§4.2, §5.1, §8): of the N steps, each trajectory trains ⌊N·timestepFraction⌋ of its
 * stochastic steps — the first ones in order (flow_grpo: 0.99 drops the last transition) or, with
 * `shuffleTimesteps`, a fresh permutation per trajectory and epoch (ddpo-pytorch, DanceGRPO's 0.6).
 */
import { Effect } from "effect"
import { GraphError } from "../../engine/graph.ts"
import type { ParamValues } from "../../engine/params.ts"
import { SessionError } from "../../engine/session.ts"
import { DEFAULT_ADAM, emaDecay, Trainer, type TrainState } from "../../engine/train.ts"
import { TrainError } from "../../engine/train.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { velocityNet } from "../../models/networks.ts"
import { type PolicyLossConfig, ppoLoss, sdpoLoss } from "../../models/policy-loss.ts"
import { permutation, type RandomStream } from "../../random/streams.ts"
import type { BaseModel } from "../setup/base-model.ts"
import type { Advantages, StepAdvantages } from "./advantages.ts"
import type { RlConfig, RlVariant } from "./config.ts"
import type { Trajectories } from "./rollout.ts"
import type { RlState } from "./state.ts"
import {
  rescore,
  type Row,
  rowFeeds,
  type RowScratch,
  type RowTables,
  storedLogProbs,
  storedMeans,
  trainedSteps,
  type UpdatePlan
} from "./update-batches.ts"
import { type UpdateRequest, updateRequestOf } from "./update-request.ts"

export interface UpdateResult {
  readonly state: RlState
  readonly metrics: Readonly<Record<string, number>>
}

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

const copyOf = (p: ParamValues) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.slice()]))
const zeros = (p: ParamValues) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, new Float32Array(v.length)]))

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
  lpDeviation: Number.NaN
})

const noMoments = (step: number): never => {
  throw new Error(
    `update: the state after optimizer step ${step} has no AdamW moments ` +
      "(a run keeps them in its newest checkpoint only)"
  )
}

const runUpdates = async (
  plan: UpdatePlan,
  tr: Trajectories,
  state: RlState | null,
  tracker: RlState["tracker"],
  base: BaseModel,
  config: UpdateRequest,
  rng: RandomStream
): Promise<UpdateResult> => {
  if (tr.trainable.length === 0) throw new Error(`${plan.name}: no stochastic step to train (noise level 0?)`)
  const specs = velocityNet(base.net).specs
  const conditional = base.net.classes > 0
  const init: TrainState = state === null
    ? { params: base.params, m: zeros(base.params), v: zeros(base.params), step: 0 }
    : state.m !== undefined && state.v !== undefined
    ? { ...state, m: state.m, v: state.v }
    : noMoments(state.step)
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
      const ratio = r.extra.ratio.data as Float32Array
      const lp = r.extra.lp.data as Float64Array
      const lpo = feeds.lp_old.data as Float64Array
      if (stats.steps === 0) {
        // The first step runs at θ_old: the loss graph's log-probs against the sampler's.
        stats.firstDeviation = ratio.reduce((m, v) => Math.max(m, Math.abs(v - 1)), 0)
        stats.lpDeviation = mb.reduce(
          (m, [j, k], q) => Math.max(m, Math.abs(lp[q] - tables.lpOld[j * steps.length + k])),
          0
        )
      }
      for (let q = 0; q < ratio.length; q++) {
        stats.ratioSum += ratio[q]
        stats.ratioMin = Math.min(stats.ratioMin, ratio[q])
        stats.ratioMax = Math.max(stats.ratioMax, ratio[q])
        if (Math.abs(ratio[q] - 1) > config.clipRange) stats.clipped++
        stats.approxKl += 0.5 * (lp[q] - lpo[q]) ** 2
      }
      stats.rows += ratio.length
      stats.gradNorm += r.gradNorm
      stats.loss += r.loss
      stats.kl += r.metrics.kl ?? 0
      stats.steps++
      if (ema !== undefined) emaStep(ema, trainer.state.params, trainer.state.step, config.ema, config.emaInterval)
    }
  }
  const newState: RlState = { ...trainer.state, tracker, ...(ema === undefined ? {} : { ema }) }
  await trainer.release()
  return { state: newState, metrics: summary(stats, plan.lossKey.beta > 0) }
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
  trained_rows: stats.rows
})

type UpdateInputs<Adv, Cfg> = {
  trajectories: Trajectories
  advantages: Adv
  state: RlState | null
  base: BaseModel
  config: Cfg
}

/** An update node (the stage `update`): its loss, minibatch partition and row values from the inputs. */
const updateNode = <Adv extends { readonly tracker: RlState["tracker"] }, Cfg extends RlConfig>(def: {
  readonly doc: string
  readonly request: (config: Cfg) => UpdateRequest
  readonly plan: (input: UpdateInputs<Adv, Cfg>, request: UpdateRequest) => UpdatePlan
}) =>
  Node.make({
    name: "update",
    doc: def.doc,
    inputs: {
      trajectories: Port.of<Trajectories>(),
      advantages: Port.of<Adv>(),
      state: Port.of<RlState | null>(),
      base: Port.of<BaseModel>(),
      config: Port.of<Cfg>()
    },
    run: (input: UpdateInputs<Adv, Cfg>) =>
      Effect.gen(function*() {
        const rng = yield* Rng
        const request = def.request(input.config)
        return yield* Node.promise([TrainError, GraphError, SessionError], () =>
          runUpdates(
            def.plan(input, request),
            input.trajectories,
            input.state,
            input.advantages.tracker,
            input.base,
            request,
            rng.stream("update")
          ))
      }),
    metrics: (u: UpdateResult) => u.metrics
  })

const lossKeyOf = (base: BaseModel, config: UpdateRequest): PolicyLossConfig => ({
  net: base.net,
  cfg: config.cfg,
  clipRange: config.clipRange,
  beta: config.beta,
  rationorm: config.rationorm,
  logProb: config.logProb
})

/** PPO-clip (+ KL) on shuffled minibatches of trajectories (DDPO, the GRPO family). */
export const policyUpdate = (variant: Pick<RlVariant, "rationorm">) =>
  updateNode<Advantages, RlConfig>({
    doc: "PPO-clip (+ KL) updates on shuffled minibatches; the new iteration state",
    request: (c) => updateRequestOf(c, variant.rationorm ?? false),
    plan: ({ trajectories, advantages, base }, config) => {
      const lossKey = lossKeyOf(base, config)
      const n = trajectories.rollout.chains
      const stepsOf = trainedSteps(trajectories, config)
      return {
        name: "ppo-train-step",
        loss: ppoLoss(lossKey),
        lossKey,
        partition: (_, stream) => {
          const order = permutation(stream, n)
          const batches: Array<Array<Row>> = []
          for (let i = 0; i < n; i += config.batchSize) {
            const members = Array.from(order.subarray(i, Math.min(n, i + config.batchSize)))
            batches.push(members.flatMap((j) => stepsOf(stream, j).map((k) => [j, k] as const)))
          }
          return batches
        },
        values: { adv: (j) => advantages.perTrajectory[j], weight: (_, __, rows) => 1 / rows }
      }
    }
  })

/** SDPO's reward-difference regression on step-shuffled minibatches of pairs (§9.4, §9.5). */
export const pairedUpdate = updateNode<StepAdvantages, RlConfig & { readonly lambda: number }>({
  doc: "SDPO reward-difference regression with step-shuffled minibatches of pairs",
  request: (c) => ({ ...updateRequestOf(c, false), beta: 0 }),
  plan: ({ trajectories, advantages, base, config: { lambda } }, config) => {
    if (trajectories.prompts.groupSize !== 2) {
      throw new Error(`update: SDPO trains on pairs; groupSize is ${trajectories.prompts.groupSize}, expected 2`)
    }
    const lossKey = lossKeyOf(base, config)
    const pairs = trajectories.rollout.chains / 2
    const N = trajectories.steps.length
    // Each pair's steps are permuted (§9.5); both members take the same step at each position.
    const stepsOf = trainedSteps(trajectories, { ...config, shuffleTimesteps: true })
    return {
      name: "sdpo-train-step",
      loss: sdpoLoss(lossKey),
      lossKey,
      partition: (_, stream) => {
        const order = permutation(stream.child("pairs"), pairs)
        const perms = Array.from({ length: pairs }, (_, p) => stepsOf(stream, p))
        const batches: Array<Array<Row>> = []
        for (let j = 0; j < perms[0].length; j++) {
          for (let i = 0; i < pairs; i += config.batchSize) {
            const members = Array.from(order.subarray(i, Math.min(pairs, i + config.batchSize)))
            batches.push(members.flatMap((p) => [[2 * p, perms[p][j]], [2 * p + 1, perms[p][j]]] as const))
          }
        }
        return batches
      },
      values: {
        adv: (j, k) => advantages.perStep[j * N + k],
        // λ^k, with k the step's original index (it stays attached through the shuffle).
        weight: (_, k) => lambda ** k
      }
    }
  }
})
