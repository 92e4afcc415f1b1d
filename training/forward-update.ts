/**
 * The update loop of RL on the forward process (DiffusionNFT, AWM; docs/algorithms.md §14): each clean
 * sample of the rollout, re-noised at the training grid's times with fresh noise, is a row of the loss
 * in models/forward-loss.ts. Only the samples, their advantages and the grid enter — not how the samples
 * were drawn — so any sampler, the ODE included, can make the rollouts. No Effect here.
 */
import { type Parameterization, predictions, type Process } from "../diffusion/process.ts"
import type { ParamValues } from "../engine/params.ts"
import type { HostTensor } from "../engine/session.ts"
import { DEFAULT_ADAM } from "../engine/train-step.ts"
import { Trainer, type TrainState } from "../engine/train.ts"
import { type ForwardKind, forwardLoss, type ForwardLossConfig } from "../models/forward-loss.ts"
import { velocityNet, type VelocityNetConfig } from "../models/velocity-net.ts"
import { permutation, type RandomStream } from "../random/streams.ts"
import { copyOf, type PolicyState, startState } from "./train-state.ts"

/** What the update learns from: the rollout's clean samples, their conditions and the grid's times. */
export interface ForwardBatch {
  readonly final: Float32Array
  readonly chains: number
  readonly d: number
  readonly condition: Int32Array | undefined
  /** The training grid's times (process time), every one a candidate training time. */
  readonly times: ReadonlyArray<number>
  readonly process: Process
  readonly parameterization: Parameterization
}

export interface ForwardRequest extends Omit<ForwardLossConfig, "net"> {
  readonly lr: number
  readonly weightDecay: number
  readonly innerEpochs: number
  /** Samples per optimizer step (each with its trained times as rows). */
  readonly batchSize: number
  readonly threads: number
  /** Fraction of the grid's times each sample trains, drawn at random per sample (NVlabs: int(N·0.99)). */
  readonly timestepFraction: number
}

/** The state an update starts from, and DiffusionNFT's sampling policy θ_old (absent: the weights). */
export interface ForwardState extends PolicyState {
  readonly old?: ParamValues
}

/**
 * DiffusionNFT's soft update of the sampling policy after an iteration, θ_old ← d·θ_old + (1 − d)·θ with
 * d = min(0.001·steps, 0.5) (`return_decay`, decay_type 1, of train_nft_sd3.py; steps = optimizer steps so far).
 */
export const nftOldDecay = (steps: number): number => Math.min(0.001 * steps, 0.5)

/** The rows of one minibatch as feeds: x_t = α x0 + σ ε, the exact output f*, and x̂0 = p x_t + q f. */
const rowFeeds = (
  batch: ForwardBatch,
  rows: ReadonlyArray<readonly [number, number]>,
  noise: (j: number) => Float32Array,
  advantage: (j: number) => number,
  advClip: number
): Record<string, HostTensor> => {
  const { d } = batch
  const M = rows.length
  const [xt, x0, target] = [0, 1, 2].map(() => new Float32Array(M * d))
  const [t, p, q, adv] = [0, 1, 2, 3].map(() => new Float32Array(M))
  const c = new BigInt64Array(M)
  rows.forEach(([j, k], row) => {
    const time = batch.times[k]
    const [alpha, sigma] = [batch.process.alpha(time), batch.process.sigma(time)]
    const map = predictions(batch.process, batch.parameterization, time).x0
    const eps = noise(j).subarray(k * d, (k + 1) * d)
    for (let i = 0; i < d; i++) {
      const clean = batch.final[j * d + i]
      const noised = Math.fround(alpha * clean + sigma * eps[i])
      xt[row * d + i] = noised
      x0[row * d + i] = clean
      target[row * d + i] = (clean - map.x * noised) / map.f
    }
    t[row] = batch.process.modelTime(time)
    p[row] = map.x
    q[row] = map.f
    adv[row] = Math.max(-advClip, Math.min(advClip, advantage(j)))
    c[row] = BigInt(batch.condition?.[j] ?? 0)
  })
  return {
    xt: { data: xt, dims: [M, d] },
    x0: { data: x0, dims: [M, d] },
    target: { data: target, dims: [M, d] },
    t: { data: t, dims: [M] },
    p: { data: p, dims: [M] },
    q: { data: q, dims: [M] },
    adv: { data: adv, dims: [M] },
    w: { data: new Float32Array(M).fill(1 / M), dims: [M] },
    ...(batch.condition === undefined ? {} : { c: { data: c, dims: [M] } })
  }
}

const asFeeds = (prefix: string, net: VelocityNetConfig, params: ParamValues): Record<string, HostTensor> =>
  Object.fromEntries(
    velocityNet(net).specs.map((s) => [`${prefix}.${s.name}`, { data: params[s.name], dims: s.shape }])
  )

/** Each sample's trained times for an epoch: a random K of the grid's N (K = max(1, ⌊N·fraction⌋)). */
const trainedTimes = (batch: ForwardBatch, fraction: number, rng: RandomStream, j: number) =>
  Array.from(permutation(rng.child("times", j), batch.times.length))
    .slice(0, Math.max(1, Math.floor(batch.times.length * fraction)))

type Stats = { loss: number; gradNorm: number; kl: number; ratio: number; clipped: number; rows: number; steps: number }

/** One optimizer step into the update's statistics (AWM's ratios and clipped rows among them). */
const record = (
  stats: Stats,
  r: {
    loss: number
    gradNorm: number
    metrics: Readonly<Record<string, number>>
    extra: Record<string, { data: unknown }>
  },
  rows: number,
  clipRange: number
) => {
  stats.loss += r.loss
  stats.gradNorm += r.gradNorm
  stats.kl += r.metrics.kl ?? 0
  stats.steps++
  stats.rows += rows
  const ratio = r.extra.ratio?.data as Float32Array | undefined
  ratio?.forEach((v) => {
    stats.ratio += v
    if (Math.abs(v - 1) > clipRange) stats.clipped++
  })
}

/** θ_old ← d·θ_old + (1 − d)·θ, in place. */
const softUpdate = (old: ParamValues, params: ParamValues, decay: number) => {
  for (const [k, o] of Object.entries(old)) {
    const p = params[k]
    for (let i = 0; i < o.length; i++) o[i] = decay * o[i] + (1 - decay) * p[i]
  }
}

/** The optimizer steps of one iteration, and DiffusionNFT's new sampling policy. */
export const runForwardUpdates = async (
  batch: ForwardBatch,
  advantages: Float64Array,
  state: ForwardState | null,
  base: { readonly net: VelocityNetConfig; readonly params: ParamValues },
  request: ForwardRequest,
  rng: RandomStream
): Promise<{ trained: TrainState; old: ParamValues | undefined; metrics: Record<string, number> }> => {
  const init = startState(state, base.params)
  const cfg: ForwardLossConfig = { ...request, net: base.net }
  const trainer = await Trainer.create({
    name: `${request.kind}-train-step`,
    specs: velocityNet(base.net).specs,
    loss: forwardLoss(cfg),
    threads: request.threads,
    optimization: "basic",
    sessionKey: `${request.kind}-train-step|${JSON.stringify(cfg)}`,
    adam: { ...DEFAULT_ADAM, lr: request.lr, weightDecay: request.weightDecay, maxGradNorm: 1 },
    init,
    // The previous iteration's state is superseded by this update's (its checkpoint holds a copy).
    donate: state !== null
  })
  // NFT's old policy persists across iterations; AWM's is the rollout's weights, fixed for this update
  // (copied before the trainer may write into donated buffers).
  const old = copyOf(request.kind === "nft" ? state?.old ?? init.params : init.params)
  const fixed = { ...asFeeds("old", base.net, old), ...(request.beta > 0 ? asFeeds("ref", base.net, base.params) : {}) }
  const stats: Stats = { loss: 0, gradNorm: 0, kl: 0, ratio: 0, clipped: 0, rows: 0, steps: 0 }
  for (let epoch = 0; epoch < request.innerEpochs; epoch++) {
    const erng = rng.child("epoch", epoch)
    const order = permutation(erng.child("samples"), batch.chains)
    const noise = (j: number) => erng.child("noise", j).fillNormal(new Float32Array(batch.times.length * batch.d))
    for (let from = 0; from < batch.chains; from += request.batchSize) {
      const members = Array.from(order.subarray(from, from + request.batchSize))
      const rows = members.flatMap((j) =>
        trainedTimes(batch, request.timestepFraction, erng, j).map((k) => [j, k] as const)
      )
      const r = await trainer.step({ ...rowFeeds(batch, rows, noise, (j) => advantages[j], request.advClip), ...fixed })
      record(stats, r, rows.length, request.clipRange)
    }
  }
  const trained = trainer.state
  await trainer.release()
  const decay = nftOldDecay(trained.step)
  if (request.kind === "nft") softUpdate(old, trained.params, decay)
  return {
    trained,
    old: request.kind === "nft" ? old : undefined,
    metrics: summary(request.kind, stats, request.beta > 0, decay)
  }
}

const summary = (
  kind: ForwardKind,
  s: Stats,
  kl: boolean,
  decay: number
): Record<string, number> => ({
  policy_loss: s.loss / s.steps,
  grad_norm: s.gradNorm / s.steps,
  ...(kl ? { kl: s.kl / s.steps } : {}),
  ...(kind === "awm" ? { ratio_mean: s.ratio / s.rows, clipfrac: s.clipped / s.rows } : { old_decay: decay }),
  optimizer_steps: s.steps,
  trained_rows: s.rows
})
