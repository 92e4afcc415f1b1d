/**
 * policyUpdate: PPO-clip updates of the policy on the iteration's transitions (DDPO / GRPO family,
 * ALGORITHMS.md §4.2, §8, §12.9), with optional KL to the base model, through the engine's AdamW.
 *
 * Each inner epoch shuffles trajectories and takes one optimizer step per minibatch of
 * `batchSize` trajectories over all their stochastic steps — the gradient the references
 * accumulate over `grad_accum × trained steps` micro-steps, computed as one batch.
 * Before the first epoch, every minibatch's old log-probs are re-scored at θ_old with a graph that
 * computes them exactly as the loss does, on the same rows: the first step's ratio is exactly 1.
 */
import { Effect } from "effect"
import { Node, Port } from "../pipelines/kernel/node.ts"
import { Rng } from "../pipelines/kernel/services.ts"
import { permutation } from "../random/streams.ts"
import { Graph } from "../engine/graph.ts"
import { EngineSession, type HostTensor } from "../engine/session.ts"
import { Trainer, DEFAULT_ADAM, cachedSession, type TrainState } from "../engine/train.ts"
import { paramInputs } from "../engine/params.ts"
import { velocityNet } from "../models/networks.ts"
import { logProbGraph, ppoLoss, type PolicyLossConfig } from "../models/policy-loss.ts"
import type { Advantages } from "./advantages.ts"
import type { BaseModel } from "./base-model.ts"
import type { Trajectories } from "./rollout.ts"
import type { RlState } from "./rl-state.ts"

export interface UpdateRequest {
  readonly lr: number
  readonly innerEpochs: number
  readonly clipRange: number
  readonly beta: number
  readonly cfg: number
  /** Trajectories per optimizer step. */
  readonly batchSize: number
  readonly threads: number
}

export interface UpdateResult {
  readonly state: RlState
  readonly metrics: Readonly<Record<string, number>>
}

/** Advantages are clipped to ±5 before the loss (every reference does, §12.5). */
const ADV_CLIP = 5

const zeros = (p: Record<string, Float32Array>) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, new Float32Array(v.length)]))

/** Feeds of the rows (trajectory j, trainable step k) of the given trajectories; lpOld is n × T'. */
const rowFeeds = (tr: Trajectories, traj: ReadonlyArray<number>, adv: Float64Array, lpOld: Float32Array | undefined, conditional: boolean) => {
  const { rollout: r, steps, trainable } = tr
  const d = r.d
  const n = r.chains * d
  const M = traj.length * trainable.length
  const x = new Float32Array(M * d)
  const xNext = new Float32Array(M * d)
  const t = new Float32Array(M)
  const c = new BigInt64Array(M)
  const [a, b, s, lp, A, w] = [new Float32Array(M), new Float32Array(M), new Float32Array(M), new Float32Array(M), new Float32Array(M), new Float32Array(M).fill(1 / M)]
  let row = 0
  for (const j of traj) {
    for (let kk = 0; kk < trainable.length; kk++) {
      const k = trainable[kk]
      x.set(r.latents!.subarray(k * n + j * d, k * n + (j + 1) * d), row * d)
      xNext.set(r.latents!.subarray((k + 1) * n + j * d, (k + 1) * n + (j + 1) * d), row * d)
      t[row] = tr.process.modelTime(steps[k].t)
      c[row] = BigInt(tr.prompts.condition[j])
      a[row] = steps[k].a
      b[row] = steps[k].b
      s[row] = steps[k].s
      lp[row] = lpOld?.[j * trainable.length + kk] ?? 0
      A[row] = Math.max(-ADV_CLIP, Math.min(ADV_CLIP, adv[j]))
      row++
    }
  }
  const feeds: Record<string, HostTensor> = {
    x: { data: x, dims: [M, d] }, x_next: { data: xNext, dims: [M, d] }, t: { data: t, dims: [M] },
    a: { data: a, dims: [M] }, b: { data: b, dims: [M] }, s: { data: s, dims: [M] },
    lp_old: { data: lp, dims: [M] }, adv: { data: A, dims: [M] }, w: { data: w, dims: [M] }
  }
  if (conditional) feeds.c = { data: c, dims: [M] }
  return feeds
}

export const policyUpdate = Node.make({
  name: "policyUpdate",
  doc: "PPO-clip (+ KL) updates on shuffled minibatches; the new iteration state",
  inputs: { trajectories: Port.of<Trajectories>(), advantages: Port.of<Advantages>(), state: Port.of<RlState | null>(), base: Port.of<BaseModel>(), config: Port.of<UpdateRequest>() },
  run: ({ trajectories, advantages, state, base, config }) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      return yield* Effect.tryPromise({
        try: async () => {
          const loss: PolicyLossConfig = { net: base.net, cfg: config.cfg, clipRange: config.clipRange, beta: config.beta }
          const specs = velocityNet(base.net).specs
          const conditional = base.net.classes > 0
          const init: TrainState = state ?? { params: base.params, m: zeros(base.params), v: zeros(base.params), step: 0 }
          const key = JSON.stringify(loss)
          const trainer = await Trainer.create({
            name: "policy-train-step", specs, loss: ppoLoss(loss), threads: config.threads, optimization: "basic", sessionKey: key,
            adam: { ...DEFAULT_ADAM, lr: config.lr, maxGradNorm: 1 }, init
          })
          const rescore = await cachedSession(`rescore|${key}|${config.threads}`, () => {
            const g = new Graph("policy-logprob")
            logProbGraph(g, loss, paramInputs(g, specs, "p."))
            return EngineSession.create(g, { threads: config.threads, optimization: "basic" })
          })
          const weightFeeds = (prefix: string, values: Record<string, Float32Array>) =>
            Object.fromEntries(specs.map((sp) => [`${prefix}${sp.name}`, { data: values[sp.name], dims: sp.shape }]))
          const ref = config.beta > 0 ? weightFeeds("ref.", base.params) : {}
          const n = trajectories.rollout.chains
          const stats = { ratios: [] as Array<number>, approxKl: 0, clipped: 0, rows: 0, gradNorm: 0, loss: 0, kl: 0, steps: 0, firstDeviation: Number.NaN }
          if (trajectories.trainable.length === 0) throw new Error("policyUpdate: no stochastic step to train (noise level 0?)")
          // Old log-probs of every (trajectory, trainable step), re-scored at θ_old on epoch 0's rows.
          const T = trajectories.trainable.length
          const lpOld = new Float32Array(n * T)
          for (let epoch = 0; epoch < config.innerEpochs; epoch++) {
            const order = permutation(rng.stream("epoch", epoch), n)
            const batches: Array<Array<number>> = []
            for (let i = 0; i < n; i += config.batchSize) batches.push(Array.from(order.subarray(i, Math.min(n, i + config.batchSize))))
            if (epoch === 0) {
              for (const mb of batches) {
                const out = await rescore.run({ ...rowFeeds(trajectories, mb, advantages.perTrajectory, undefined, conditional), ...weightFeeds("p.", init.params) })
                const lp = out.lp.data as Float32Array
                mb.forEach((j, q) => lpOld.set(lp.subarray(q * T, (q + 1) * T), j * T))
              }
            }
            for (const mb of batches) {
              const feeds = rowFeeds(trajectories, mb, advantages.perTrajectory, lpOld, conditional)
              const r = await trainer.step({ ...feeds, ...ref })
              const ratio = r.extra.ratio.data as Float32Array
              const lp = r.extra.lp.data as Float32Array
              const lpo = feeds.lp_old.data as Float32Array
              if (stats.steps === 0) stats.firstDeviation = ratio.reduce((m, v) => Math.max(m, Math.abs(v - 1)), 0)
              for (let k = 0; k < ratio.length; k++) {
                stats.ratios.push(ratio[k])
                if (Math.abs(ratio[k] - 1) > config.clipRange) stats.clipped++
                stats.approxKl += 0.5 * (lp[k] - lpo[k]) ** 2
              }
              stats.rows += ratio.length
              stats.gradNorm += r.gradNorm
              stats.loss += r.loss
              stats.kl += r.metrics.kl ?? 0
              stats.steps++
            }
          }
          const newState: RlState = { ...trainer.state, tracker: advantages.tracker }
          await trainer.release()
          const ratios = stats.ratios
          return {
            state: newState,
            metrics: {
              ratio_mean: ratios.reduce((a, b) => a + b, 0) / ratios.length,
              ratio_min: ratios.reduce((a, b) => Math.min(a, b), Infinity),
              ratio_max: ratios.reduce((a, b) => Math.max(a, b), -Infinity),
              first_step_ratio_deviation: stats.firstDeviation,
              clipfrac: stats.clipped / stats.rows,
              approx_kl: stats.approxKl / stats.rows,
              grad_norm: stats.gradNorm / stats.steps,
              policy_loss: stats.loss / stats.steps,
              ...(config.beta > 0 ? { kl: stats.kl / stats.steps } : {}),
              optimizer_steps: stats.steps
            }
          } satisfies UpdateResult
        },
        catch: (e) => e
      })
    }),
  metrics: (u) => u.metrics
})
