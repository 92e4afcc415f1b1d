/**
 * Adjoint matching's update loop (docs/algorithms.md §10; soc-fine-tuning-sd `am_trainer.py`): the rows
 * of the adjoint window in minibatches, the regression of the control onto the adjoints through the
 * engine's AdamW with the reference's warm-up, loss clipping and prompt dropout. No Effect here:
 * nodes/adjoint/update.ts is the stage that calls it.
 */
import type { Process } from "../diffusion/process.ts"
import type { Rollout } from "../diffusion/rollout.ts"
import type { ParamValues } from "../engine/params.ts"
import type { EngineSession, HostTensor } from "../engine/session.ts"
import { DEFAULT_ADAM } from "../engine/train-step.ts"
import { Trainer, type TrainState } from "../engine/train.ts"
import { adjointMatchingLoss, LossClip, type LossClipState, rowLossSession } from "../models/adjoint-loss.ts"
import { velocityNet, type VelocityNetConfig } from "../models/velocity-net.ts"
import { permutation, type RandomStream } from "../random/streams.ts"
import { type AmUpdateRequest, baseMeans, feedsOf, rowsOf } from "./adjoint-rows.ts"
import { type Adjoints, rowNorms } from "./adjoints.ts"

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

/** What one iteration's update works on: the rollout and its adjoints, the base's outputs, the state to start from. */
export interface AmUpdateOptions {
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
}

/**
 * The update of one iteration: rows, base means, minibatches of trajectories, AdamW steps with loss
 * clipping. Returns the new train state, the clip threshold to keep, and the metrics.
 */
export const adjointMatchingUpdate = async (
  opts: AmUpdateOptions
): Promise<{ state: TrainState; clip: LossClipState; metrics: Record<string, number> }> => {
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
