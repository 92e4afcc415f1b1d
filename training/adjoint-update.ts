/**
 * Adjoint matching's update loop (docs/algorithms.md §10; soc-fine-tuning-sd `am_trainer.py`): the rows
 * of the adjoint window in minibatches, the regression of the control onto the adjoints through the
 * engine's AdamW with the reference's warm-up, loss clipping and prompt dropout. No Effect here:
 * nodes/adjoint/update.ts is the stage that calls it.
 */
import { type CostWeight, runningVariance, type TargetAdjoint } from "../diffusion/adjoint.ts"
import type { Process } from "../diffusion/process.ts"
import type { Rollout } from "../diffusion/rollout.ts"
import type { ParamValues } from "../engine/params.ts"
import type { EngineSession, HostTensor } from "../engine/session.ts"
import { DEFAULT_ADAM } from "../engine/train-step.ts"
import { Trainer, type TrainState } from "../engine/train.ts"
import {
  adjointMatchingLoss,
  LossClip,
  type LossClipState,
  rowLossSession,
  sampleTimeIndices
} from "../models/adjoint-loss.ts"
import { velocityNet, type VelocityNetConfig } from "../models/networks.ts"
import { permutation, type RandomStream } from "../random/streams.ts"
import { type Adjoints, latentsAt, rowNorms } from "./adjoints.ts"

export interface AmUpdateRequest {
  readonly net: VelocityNetConfig
  /** The trained network is a control added to the frozen base (f_ft = f_base + g_θ). */
  readonly residual: boolean
  readonly deterministic: boolean
  /** Regress step k onto a_{k+1} (next) or a_k (state, am_trainer.py's index). */
  readonly targetAdjoint: TargetAdjoint
  readonly costWeight: CostWeight
  readonly lr: number
  readonly batchSize: number
  readonly innerEpochs: number
  readonly threads: number
  /** Drop rows at or above the EMA of the 90th percentile of √ℓ (the reference's per-sample clipping). */
  readonly lossClip: boolean
  /** Whether a batch's own quantile enters the EMA before it masks the batch (the reference's order). */
  readonly lossClipOrder: "previous" | "reference"
  /** Gradient norm clipping; 0: none. */
  readonly gradClip: number
  /** Optimizer steps of the linear learning-rate warm-up from 0 (counted over the whole run). */
  readonly warmupSteps: number
  readonly weightDecay: number
  /** Probability that an optimizer batch trains the unconditional branch (a conditional network only). */
  readonly promptDropout: number
}

/**
 * The batch's condition and base outputs: with probability `promptDropout` the null condition and the
 * base's unconditional outputs (am_trainer.py `evaluate_controls`: one draw per batch, the whole batch
 * then regresses the unconditional branch onto the same adjoints, so CFG stays trained), else the prompts'.
 */
const batchCondition = (
  opts: {
    readonly condition?: Int32Array | undefined
    readonly unconditional?: {
      readonly condition: Int32Array
      readonly baseOutput: (k: number) => Promise<Float32Array>
    }
  },
  dropout: number,
  stream: RandomStream,
  baseOutput: (k: number) => Promise<Float32Array>
) =>
  opts.unconditional !== undefined && dropout > 0 && stream.uniform() < dropout
    ? { dropped: true, condition: opts.unconditional.condition, baseOutput: opts.unconditional.baseOutput }
    : { dropped: false, ...(opts.condition === undefined ? {} : { condition: opts.condition }), baseOutput }

/**
 * The learning rate of optimizer step `step` (0-based, over the run): soc_trainer.py's `linear_warmup`
 * LambdaLR, lr · step / warmup while step < warmup — so the very first step moves only the moments.
 */
export const warmupLr = (lr: number, step: number, warmup: number): number => (step < warmup ? lr * step / warmup : lr)

type Row = readonly [j: number, k: number]

/** The rows of an iteration: per trajectory, the reference's time indices inside the window. */
const rowsOf = (r: Rollout, from: number, deterministic: boolean, stream: RandomStream): Array<Array<Row>> => {
  const N = r.steps.length
  return Array.from({ length: r.chains }, (_, j) =>
    sampleTimeIndices(N - from, stream.child("time", j))
      .map((i) => from + i)
      // A deterministic step of a stochastic sampler has no s to divide by (§12.3).
      .filter((k) => deterministic || r.steps[k].s > 0)
      .map((k) => [j, k] as const))
}

/** Row q of `mu` ← a·x_j + b·f_j (rows of d); a function of its own, so the engine optimises the loop. */
const meanRow = (
  mu: Float32Array,
  q: number,
  x: Float32Array,
  f: Float32Array,
  j: number,
  coef: { readonly a: number; readonly b: number },
  d: number
) => {
  const { a, b } = coef
  for (let e = 0; e < d; e++) mu[q * d + e] = a * x[j * d + e] + b * f[j * d + e]
}

/** μ_base at the rows' latents from f_base of every chain at each step the rows use. */
const baseMeans = async (r: Rollout, rows: ReadonlyArray<Row>, baseOutput: (k: number) => Promise<Float32Array>) => {
  const outputs = new Map<number, Float32Array>()
  for (const [, k] of rows) if (!outputs.has(k)) outputs.set(k, await baseOutput(k))
  const mu = new Float32Array(rows.length * r.d)
  rows.forEach(([j, k], q) => meanRow(mu, q, latentsAt(r, k), outputs.get(k)!, j, r.steps[k], r.d))
  return mu
}

/** The loss graph's feeds for a minibatch of rows. */
const feedsOf = (opts: {
  readonly r: Rollout
  readonly rows: ReadonlyArray<Row>
  readonly adjoints: Adjoints
  readonly muBase: Float32Array
  readonly request: AmUpdateRequest
  readonly process: Process
  readonly condition?: Int32Array | undefined
  readonly threshold: number
}) => {
  const { r, rows, adjoints, request } = opts
  const d = r.d
  const M = rows.length
  const x = new Float32Array(M * d)
  const adj = new Float32Array(M * d)
  const std = (k: number) =>
    request.deterministic
      ? Math.sqrt(runningVariance(r.steps[k].t, r.steps[k].tNext, request.costWeight))
      : r.steps[k].s
  rows.forEach(([j, k], q) => {
    x.set(latentsAt(r, k).subarray(j * d, (j + 1) * d), q * d)
    const a = adjoints.values[k + (request.targetAdjoint === "next" ? 1 : 0) - adjoints.from]
    adj.set(a.subarray(j * d, (j + 1) * d), q * d)
  })
  const col = (f: (k: number) => number) => Float32Array.from(rows, ([, k]) => f(k))
  return {
    x: { data: x, dims: [M, d] },
    t: { data: col((k) => opts.process.modelTime(r.steps[k].t)), dims: [M] },
    ...(opts.condition === undefined
      ? {}
      : { c: { data: BigInt64Array.from(rows, ([j]) => BigInt(opts.condition![j])), dims: [M] } }),
    mu_base: { data: opts.muBase, dims: [M, d] },
    adjoint: { data: adj, dims: [M, d] },
    a: { data: col((k) => r.steps[k].a), dims: [M] },
    b: { data: col((k) => r.steps[k].b), dims: [M] },
    s: { data: col(std), dims: [M] },
    w: { data: new Float32Array(M).fill(1 / M), dims: [M] },
    // float32 has no room for larger thresholds; Infinity (nothing clipped yet) becomes its maximum.
    threshold: { data: Float32Array.of(Math.min(opts.threshold, 3.4e38)), dims: [] }
  }
}

const newStats = () => ({
  rows: 0,
  masked: 0,
  control: 0,
  target: 0,
  ess: 0,
  loss: 0,
  gradNorm: 0,
  steps: 0,
  dropped: 0
})

/** ‖a s‖ per row, from the feeds (the target's norm; the control's comes from the graph). */
const targetNorms = (feeds: ReturnType<typeof feedsOf>, d: number) =>
  rowNorms(feeds.adjoint.data, feeds.s.data.length, d).map((n, q) => n * feeds.s.data[q])

/** The trainer of the reference's AdamW: betas (0.9, 0.95); weight decay and gradient clipping as requested. */
const amTrainer = (request: AmUpdateRequest, init: TrainState, donate: boolean | undefined) =>
  Trainer.create({
    name: "adjoint-matching-step",
    specs: velocityNet(request.net).specs,
    loss: adjointMatchingLoss(request.net, { residual: request.residual }),
    threads: request.threads,
    sessionKey: `adjoint-matching|${JSON.stringify(request.net)}|${request.residual}`,
    adam: {
      ...DEFAULT_ADAM,
      lr: request.lr,
      beta2: 0.95,
      weightDecay: request.weightDecay,
      maxGradNorm: request.gradClip > 0 ? request.gradClip : Number.POSITIVE_INFINITY
    },
    init,
    ...(donate === undefined ? {} : { donate })
  })

/** One optimizer step's rows into the statistics (`clip`: the loss clip when rows are masked). */
const record = (
  stats: ReturnType<typeof newStats>,
  out: { readonly loss: number; readonly gradNorm: number; readonly extra: Record<string, { data: unknown }> },
  loss: Float32Array,
  targets: ArrayLike<number>,
  clip: LossClip | undefined
) => {
  const control = out.extra.control_sq.data as Float32Array
  let [sumRoot, sum] = [0, 0]
  loss.forEach((l, q) => {
    if (clip !== undefined && !clip.keeps(l)) stats.masked++
    stats.control += Math.sqrt(control[q])
    stats.target += targets[q]
    sumRoot += Math.sqrt(l)
    sum += l
  })
  // The reference's effective sample size (Σ√ℓ)²/Σℓ, here as a fraction of the batch's rows.
  stats.ess += sum > 0 ? (sumRoot * sumRoot) / (sum * loss.length) : 1
  stats.rows += loss.length
  stats.loss += out.loss
  stats.gradNorm += out.gradNorm
  stats.steps++
}

const summary = (stats: ReturnType<typeof newStats>, threshold: number) => ({
  am_loss: stats.loss / stats.steps,
  control_norm: stats.control / stats.rows,
  target_norm: stats.target / stats.rows,
  masked_fraction: stats.masked / stats.rows,
  ess: stats.ess / stats.steps,
  clip_threshold: threshold,
  grad_norm: stats.gradNorm / stats.steps,
  optimizer_steps: stats.steps,
  prompt_dropped_fraction: stats.dropped / stats.steps,
  trained_rows: stats.rows
})

/**
 * The reference's order of loss clipping (`lossClipOrder` reference): this batch's row losses at the current
 * weights enter the quantile's EMA first, then the batch is masked by the threshold they moved.
 */
const observeFirst = async (
  rowLoss: EngineSession,
  clip: LossClip,
  feeds: Record<string, HostTensor>,
  params: ParamValues,
  net: VelocityNetConfig
) => {
  const inputs = Object.fromEntries(
    velocityNet(net).specs.map((sp) => [`p.${sp.name}`, { data: params[sp.name], dims: sp.shape }])
  )
  clip.observe((await rowLoss.run({ ...feeds, ...inputs })).row_loss.data as Float32Array)
  feeds.threshold = { data: Float32Array.of(Math.min(clip.threshold, 3.4e38)), dims: [] }
}

/**
 * The update of one iteration: rows, base means, minibatches of trajectories, AdamW steps with loss
 * clipping. Returns the new train state, the clip threshold to keep, and the metrics.
 */
export const adjointMatchingUpdate = async (opts: {
  readonly rollout: Rollout
  readonly adjoints: Adjoints
  readonly process: Process
  readonly condition?: Int32Array | undefined
  /** The frozen base model's output f_base(x_k) of every chain at step k. */
  readonly baseOutput: (k: number) => Promise<Float32Array>
  /** A conditional base's null condition per chain and its outputs under it (for `promptDropout`). */
  readonly unconditional?: {
    readonly condition: Int32Array
    readonly baseOutput: (k: number) => Promise<Float32Array>
  }
  readonly request: AmUpdateRequest
  readonly init: TrainState
  /** The caller gives `init`'s buffers up (Trainer.create's `donate`). */
  readonly donate?: boolean
  readonly clip?: LossClipState
  readonly stream: RandomStream
}): Promise<{ state: TrainState; clip: LossClipState; metrics: Record<string, number> }> => {
  const { rollout: r, request } = opts
  const perTrajectory = rowsOf(r, opts.adjoints.from, request.deterministic, opts.stream.child("rows"))
  if (perTrajectory.every((rows) => rows.length === 0)) {
    throw new Error("update: no step to train in the adjoint window (every step deterministic?)")
  }
  const trainer = await amTrainer(request, opts.init, opts.donate)
  const clip = new LossClip(0.9, 0.9, opts.clip)
  const rowLoss = request.lossClip && request.lossClipOrder === "reference"
    ? await rowLossSession(request.net, { residual: request.residual }, request.threads)
    : undefined
  // Each step's base outputs once, however many minibatches read them.
  const outputs = new Map<number, Promise<Float32Array>>()
  const baseOutput = (k: number) => outputs.get(k) ?? outputs.set(k, opts.baseOutput(k)).get(k)!
  const stats = newStats()
  for (let epoch = 0; epoch < request.innerEpochs; epoch++) {
    const order = permutation(opts.stream.child("epoch", epoch), r.chains)
    for (let i = 0; i < r.chains; i += request.batchSize) {
      const rows = Array.from(order.subarray(i, Math.min(r.chains, i + request.batchSize))).flatMap((j) =>
        perTrajectory[j]
      )
      if (rows.length === 0) continue
      const batch = batchCondition(opts, request.promptDropout, opts.stream.child("dropout", epoch, i), baseOutput)
      const feeds = feedsOf({
        ...opts,
        ...batch,
        r,
        rows,
        muBase: await baseMeans(r, rows, batch.baseOutput),
        threshold: request.lossClip ? clip.threshold : Infinity
      })
      if (rowLoss !== undefined) await observeFirst(rowLoss, clip, feeds, trainer.state.params, request.net)
      if (batch.dropped) stats.dropped++
      const out = await trainer.step(feeds, warmupLr(request.lr, trainer.state.step, request.warmupSteps))
      const loss = out.extra.row_loss.data as Float32Array
      record(stats, out, loss, targetNorms(feeds, r.d), request.lossClip ? clip : undefined)
      if (rowLoss === undefined) clip.observe(loss)
    }
  }
  const state = trainer.state
  await trainer.release()
  return { state, clip: clip.state, metrics: summary(stats, clip.threshold) }
}

/** A conditional base's null condition and its outputs under it, built on first use (dropped batches only). */
