/**
 * Policy updates through the engine's AdamW, on rows (trajectory j, stochastic step k):
 *  - policyUpdate: PPO-clip (+ KL to the base model), DDPO / GRPO family (ALGORITHMS.md §4.2, §8,
 *    §12.9). Each inner epoch shuffles trajectories and takes one optimizer step per minibatch of
 *    `batchSize` trajectories over all their stochastic steps — the gradient the references
 *    accumulate over `grad_accum × trained steps` micro-steps, computed as one batch.
 *  - pairedUpdate: SDPO's reward-difference regression (§9.4) with step-shuffled minibatches
 *    (§9.5): each pair gets its own permutation of the steps, and the optimizer step at position j
 *    mixes different actual steps across pairs.
 * Before the first epoch, every row's old log-prob is re-scored at θ_old with a graph that computes
 * it exactly as the loss does, on the same minibatches: the first step's ratio is exactly 1.
 */
import { Effect } from "effect"
import { Node, Port } from "../pipelines/kernel/node.ts"
import { Rng } from "../pipelines/kernel/services.ts"
import { permutation, type RandomStream } from "../random/streams.ts"
import { Graph } from "../engine/graph.ts"
import { EngineSession, type HostTensor } from "../engine/session.ts"
import { Trainer, DEFAULT_ADAM, cachedSession, emaDecay, type LossBuilder, type TrainState } from "../engine/train.ts"
import { paramInputs } from "../engine/params.ts"
import { velocityNet } from "../models/networks.ts"
import { logProbGraph, ppoLoss, sdpoLoss, type PolicyLossConfig } from "../models/policy-loss.ts"
import type { Advantages, StepAdvantages } from "./advantages.ts"
import type { BaseModel } from "./base-model.ts"
import type { Trajectories } from "./rollout.ts"
import type { RlState } from "./rl-state.ts"

export interface UpdateRequest {
  readonly lr: number
  readonly innerEpochs: number
  readonly clipRange: number
  readonly beta: number
  readonly cfg: number
  /** Trajectories (PPO) or pairs (SDPO) per minibatch. */
  readonly batchSize: number
  readonly threads: number
  /** Precise's ratio normalisation (§7.5). */
  readonly rationorm: boolean
  /** EMA decay of the weights (0: no EMA) and optimizer steps between its updates. */
  readonly ema: number
  readonly emaInterval: number
}

export interface UpdateResult {
  readonly state: RlState
  readonly metrics: Readonly<Record<string, number>>
}

/** A row: trajectory j at its kk-th stochastic step. */
type Row = readonly [number, number]

/** Advantages are clipped to ±5 before the loss (every reference does, §12.5). */
const ADV_CLIP = 5
const clipAdv = (a: number) => Math.max(-ADV_CLIP, Math.min(ADV_CLIP, a))

/**
 * One EMA update after optimizer step n (1-based), flow_grpo's EMAModuleWrapper (flow_grpo/ema.py):
 * every `interval` steps ((n + 1) % interval = 0), ema ← ema + (1 − d)(θ − ema) with the warm-up
 * decay d = min((1 + n)/(10 + n), decay). Updates `ema` in place; returns whether it changed.
 */
export const emaStep = (ema: Record<string, Float32Array>, params: Record<string, Float32Array>, n: number, decay: number, interval: number): boolean => {
  if ((n + 1) % interval !== 0) return false
  const rate = 1 - emaDecay(n, decay)
  for (const [k, e] of Object.entries(ema)) {
    const p = params[k]
    for (let i = 0; i < e.length; i++) e[i] += rate * (p[i] - e[i])
  }
  return true
}

const copyOf = (p: Record<string, Float32Array>) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.slice()]))

const zeros = (p: Record<string, Float32Array>) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, new Float32Array(v.length)]))

interface RowValues {
  readonly adv: (j: number, kk: number) => number
  readonly weight: (j: number, kk: number, rows: number) => number
}

/** Feeds of the given rows; lpOld is the n × T' table of old log-probs, muOld (rationorm) n × T' × d. */
const rowFeeds = (tr: Trajectories, rows: ReadonlyArray<Row>, values: RowValues, lpOld: Float32Array | undefined, conditional: boolean, muOld?: Float32Array) => {
  const { rollout: r, steps, trainable } = tr
  const d = r.d
  const n = r.chains * d
  const M = rows.length
  const T = trainable.length
  const x = new Float32Array(M * d)
  const xNext = new Float32Array(M * d)
  const t = new Float32Array(M)
  const c = new BigInt64Array(M)
  const [a, b, s, lp, A, w] = Array.from({ length: 6 }, () => new Float32Array(M))
  const mu = muOld === undefined ? undefined : new Float32Array(M * d)
  rows.forEach(([j, kk], row) => {
    const k = trainable[kk]
    x.set(r.latents!.subarray(k * n + j * d, k * n + (j + 1) * d), row * d)
    xNext.set(r.latents!.subarray((k + 1) * n + j * d, (k + 1) * n + (j + 1) * d), row * d)
    t[row] = tr.process.modelTime(steps[k].t)
    c[row] = BigInt(tr.prompts.condition[j])
    a[row] = steps[k].a
    b[row] = steps[k].b
    s[row] = steps[k].s
    lp[row] = lpOld?.[j * T + kk] ?? 0
    A[row] = clipAdv(values.adv(j, kk))
    w[row] = values.weight(j, kk, M)
    mu?.set(muOld!.subarray((j * T + kk) * d, (j * T + kk + 1) * d), row * d)
  })
  const feeds: Record<string, HostTensor> = {
    x: { data: x, dims: [M, d] }, x_next: { data: xNext, dims: [M, d] }, t: { data: t, dims: [M] },
    a: { data: a, dims: [M] }, b: { data: b, dims: [M] }, s: { data: s, dims: [M] },
    lp_old: { data: lp, dims: [M] }, adv: { data: A, dims: [M] }, w: { data: w, dims: [M] }
  }
  if (conditional) feeds.c = { data: c, dims: [M] }
  if (mu !== undefined) feeds.mu_old = { data: mu, dims: [M, d] }
  return feeds
}

interface UpdatePlan {
  readonly name: string
  readonly loss: LossBuilder
  readonly lossKey: PolicyLossConfig
  /** The minibatches (lists of rows) of an inner epoch. */
  readonly partition: (epoch: number, rng: RandomStream) => Array<Array<Row>>
  readonly values: RowValues
}

const runUpdates = async (plan: UpdatePlan, tr: Trajectories, state: RlState | null, tracker: RlState["tracker"], base: BaseModel, config: UpdateRequest, rng: RandomStream): Promise<UpdateResult> => {
  if (tr.trainable.length === 0) throw new Error(`${plan.name}: no stochastic step to train (noise level 0?)`)
  const specs = velocityNet(base.net).specs
  const conditional = base.net.classes > 0
  const init: TrainState = state ?? { params: base.params, m: zeros(base.params), v: zeros(base.params), step: 0 }
  const key = `${plan.name}|${JSON.stringify(plan.lossKey)}`
  const trainer = await Trainer.create({
    name: plan.name, specs, loss: plan.loss, threads: config.threads, optimization: "basic", sessionKey: key,
    adam: { ...DEFAULT_ADAM, lr: config.lr, maxGradNorm: 1 }, init
  })
  const rescore = await cachedSession(`rescore|${JSON.stringify(plan.lossKey)}|${config.threads}`, () => {
    const g = new Graph("policy-logprob")
    logProbGraph(g, plan.lossKey, paramInputs(g, specs, "p."))
    return EngineSession.create(g, { threads: config.threads, optimization: "basic" })
  })
  const weightFeeds = (prefix: string, values: Record<string, Float32Array>) =>
    Object.fromEntries(specs.map((sp) => [`${prefix}${sp.name}`, { data: values[sp.name], dims: sp.shape }]))
  const ref = plan.lossKey.beta > 0 ? weightFeeds("ref.", base.params) : {}
  const T = tr.trainable.length
  const lpOld = new Float32Array(tr.rollout.chains * T)
  const d = tr.rollout.d
  const muOld = plan.lossKey.rationorm === true ? new Float32Array(tr.rollout.chains * T * d) : undefined
  // The EMA starts at the weights training starts from (flow_grpo clones them), and is the trainer's own copy.
  const ema = config.ema > 0 ? copyOf(state?.ema ?? init.params) : undefined
  const stats = { ratioSum: 0, ratioMin: Infinity, ratioMax: -Infinity, approxKl: 0, clipped: 0, rows: 0, gradNorm: 0, loss: 0, kl: 0, steps: 0, firstDeviation: Number.NaN }
  for (let epoch = 0; epoch < config.innerEpochs; epoch++) {
    const batches = plan.partition(epoch, rng.child("epoch", epoch))
    if (epoch === 0) {
      for (const mb of batches) {
        const out = await rescore.run({ ...rowFeeds(tr, mb, plan.values, undefined, conditional), ...weightFeeds("p.", init.params) })
        const lp = out.lp.data as Float32Array
        const mu = out.mu?.data as Float32Array | undefined
        mb.forEach(([j, kk], q) => {
          lpOld[j * T + kk] = lp[q]
          if (mu !== undefined) muOld!.set(mu.subarray(q * d, (q + 1) * d), (j * T + kk) * d)
        })
      }
    }
    for (const mb of batches) {
      const feeds = rowFeeds(tr, mb, plan.values, lpOld, conditional, muOld)
      const r = await trainer.step({ ...feeds, ...ref })
      const ratio = r.extra.ratio.data as Float32Array
      const lp = r.extra.lp.data as Float32Array
      const lpo = feeds.lp_old.data as Float32Array
      if (stats.steps === 0) stats.firstDeviation = ratio.reduce((m, v) => Math.max(m, Math.abs(v - 1)), 0)
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
  return {
    state: newState,
    metrics: {
      ratio_mean: stats.ratioSum / stats.rows,
      ratio_min: stats.ratioMin,
      ratio_max: stats.ratioMax,
      first_step_ratio_deviation: stats.firstDeviation,
      clipfrac: stats.clipped / stats.rows,
      approx_kl: stats.approxKl / stats.rows,
      grad_norm: stats.gradNorm / stats.steps,
      policy_loss: stats.loss / stats.steps,
      ...(plan.lossKey.beta > 0 ? { kl: stats.kl / stats.steps } : {}),
      optimizer_steps: stats.steps
    }
  }
}

export const policyUpdate = Node.make({
  name: "policyUpdate",
  doc: "PPO-clip (+ KL) updates on shuffled minibatches; the new iteration state",
  inputs: { trajectories: Port.of<Trajectories>(), advantages: Port.of<Advantages>(), state: Port.of<RlState | null>(), base: Port.of<BaseModel>(), config: Port.of<UpdateRequest>() },
  run: ({ trajectories, advantages, state, base, config }) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const lossKey: PolicyLossConfig = { net: base.net, cfg: config.cfg, clipRange: config.clipRange, beta: config.beta, rationorm: config.rationorm }
      const n = trajectories.rollout.chains
      const T = trajectories.trainable.length
      const plan: UpdatePlan = {
        name: "ppo-train-step",
        loss: ppoLoss(lossKey),
        lossKey,
        partition: (_, stream) => {
          const order = permutation(stream, n)
          const batches: Array<Array<Row>> = []
          for (let i = 0; i < n; i += config.batchSize) {
            batches.push(Array.from(order.subarray(i, Math.min(n, i + config.batchSize))).flatMap((j) => Array.from({ length: T }, (_, kk) => [j, kk] as const)))
          }
          return batches
        },
        values: { adv: (j) => advantages.perTrajectory[j], weight: (_, __, rows) => 1 / rows }
      }
      return yield* Effect.tryPromise({ try: () => runUpdates(plan, trajectories, state, advantages.tracker, base, config, rng.stream("update")), catch: (e) => e })
    }),
  metrics: (u) => u.metrics
})

export const pairedUpdate = Node.make({
  name: "pairedUpdate",
  doc: "SDPO reward-difference regression with step-shuffled minibatches of pairs",
  inputs: { trajectories: Port.of<Trajectories>(), advantages: Port.of<StepAdvantages>(), state: Port.of<RlState | null>(), base: Port.of<BaseModel>(), config: Port.of<UpdateRequest & { readonly lambda: number }>() },
  run: ({ trajectories, advantages, state, base, config }) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      if (trajectories.prompts.groupSize !== 2) return yield* Effect.fail(new Error(`pairedUpdate: SDPO trains on pairs; groupSize is ${trajectories.prompts.groupSize}, expected 2`))
      const lossKey: PolicyLossConfig = { net: base.net, cfg: config.cfg, clipRange: config.clipRange, beta: 0 }
      const pairs = trajectories.rollout.chains / 2
      const T = trajectories.trainable.length
      const N = trajectories.steps.length
      const plan: UpdatePlan = {
        name: "sdpo-train-step",
        loss: sdpoLoss(lossKey),
        lossKey,
        partition: (_, stream) => {
          const order = permutation(stream.child("pairs"), pairs)
          const perms = Array.from({ length: pairs }, (_, p) => permutation(stream.child("steps", p), T))
          const batches: Array<Array<Row>> = []
          for (let j = 0; j < T; j++) {
            for (let i = 0; i < pairs; i += config.batchSize) {
              batches.push(Array.from(order.subarray(i, Math.min(pairs, i + config.batchSize))).flatMap((p) => [[2 * p, perms[p][j]], [2 * p + 1, perms[p][j]]] as const))
            }
          }
          return batches
        },
        values: {
          adv: (j, kk) => advantages.perStep[j * N + trajectories.trainable[kk]],
          // λ^k, with k the step's original index (it stays attached through the shuffle).
          weight: (_, kk) => config.lambda ** trajectories.trainable[kk]
        }
      }
      return yield* Effect.tryPromise({ try: () => runUpdates(plan, trajectories, state, advantages.tracker, base, config, rng.stream("update")), catch: (e) => e })
    }),
  metrics: (u) => u.metrics
})
