/**
 * The rows of an update (trajectory j, step k) and their feeds: which steps each trajectory trains,
 * the old log-probs and means the sampler stored, the per-row KL scale, and — for diagnosis — the old
 * log-probs re-scored with the loss's own graph.
 */
import type { Process } from "../diffusion/process.ts"
import type { Rollout, StepRecord } from "../diffusion/rollout.ts"
import { Graph } from "../engine/graph.ts"
import { paramInputs, type ParamValues } from "../engine/params.ts"
import { cachedSession } from "../engine/session-cache.ts"
import { EngineSession, type HostTensor } from "../engine/session.ts"
import type { LossBuilder } from "../engine/train-step.ts"
import { logProbGraph, type PolicyLossConfig } from "../models/policy-loss.ts"
import { velocityNet } from "../models/velocity-net.ts"
import { permutation, type RandomStream } from "../random/streams.ts"
import type { UpdateRequest } from "./update-request.ts"

/** What an update reads of an iteration's rollout (nodes/rl/rollout.ts's Trajectories has it). */
export interface RolloutBatch {
  readonly rollout: Rollout
  readonly steps: ReadonlyArray<StepRecord>
  readonly process: Process
  /** Steps a policy loss may use: stochastic (s > 0). */
  readonly trainable: ReadonlyArray<number>
  readonly prompts: { readonly condition: Int32Array }
}

/** A row: trajectory j at step k (k indexes the rollout's steps). */
export type Row = readonly [number, number]

/** Advantages are clipped to ±5 before the loss (every reference does, §12.5). */
const ADV_CLIP = 5
const clipAdv = (a: number) => Math.max(-ADV_CLIP, Math.min(ADV_CLIP, a))

/**
 * The steps trajectory j trains in an epoch: ⌊N·fraction⌋ (at least 1) of its stochastic steps, in
 * order or from a permutation drawn for (epoch, trajectory).
 */
export const trainedSteps = (
  tr: RolloutBatch,
  config: Pick<UpdateRequest, "timestepFraction" | "shuffleTimesteps">
) => {
  const N = tr.steps.length
  const T = tr.trainable.length
  const count = Math.max(1, Math.min(T, Math.floor(N * config.timestepFraction + 1e-9)))
  return (stream: RandomStream, j: number): Array<number> => {
    if (!config.shuffleTimesteps) return tr.trainable.slice(0, count)
    const perm = permutation(stream.child("steps", j), T)
    return Array.from(perm.subarray(0, count), (kk) => tr.trainable[kk])
  }
}

export interface RowValues {
  readonly adv: (j: number, k: number) => number
  readonly weight: (j: number, k: number, rows: number) => number
}

/** Per-row inputs the loss reads besides the network's. */
export interface RowTables {
  /** Old log-prob of (j, k), chains × N. */
  readonly lpOld: Float64Array
  /** Old mean μ_old of (j, k), for Precise's ratio normalisation. */
  readonly muOld: ((j: number, k: number, out: Float32Array, offset: number) => void) | undefined
  /** The KL's per-row scale (klForm). */
  readonly klScale: ((k: number) => number) | undefined
}

/**
 * Latent-sized row buffers an update reuses from one minibatch to the next (a minibatch's feeds are
 * done with once its step returns): SDPO's ten steps of 1,024 rows would otherwise take 64 MB of fresh
 * memory per iteration. One per update call, never shared between runs.
 */
export type RowScratch = Map<string, Float32Array>

const rowBuffer = (scratch: RowScratch | undefined, name: string, length: number): Float32Array => {
  const have = scratch?.get(name)
  if (have !== undefined && have.length === length) return have
  const fresh = new Float32Array(length)
  scratch?.set(name, fresh)
  return fresh
}

/** Feeds of the given rows (latent-sized ones in `scratch`'s buffers when given). */
export const rowFeeds = (
  tr: RolloutBatch,
  rows: ReadonlyArray<Row>,
  values: RowValues,
  tables: RowTables,
  conditional: boolean,
  scratch?: RowScratch
) => {
  const { rollout: r, steps } = tr
  const d = r.d
  const n = r.chains * d
  const N = steps.length
  const M = rows.length
  const x = rowBuffer(scratch, "x", M * d)
  const xNext = rowBuffer(scratch, "x_next", M * d)
  const t = new Float32Array(M)
  const c = new BigInt64Array(M)
  const [a, b, s, lp] = Array.from({ length: 4 }, () => new Float64Array(M))
  const [A, w, kl] = Array.from({ length: 3 }, () => new Float32Array(M))
  const mu = tables.muOld === undefined ? undefined : rowBuffer(scratch, "mu_old", M * d)
  rows.forEach(([j, k], row) => {
    x.set(r.latents!.subarray(k * n + j * d, k * n + (j + 1) * d), row * d)
    xNext.set(r.latents!.subarray((k + 1) * n + j * d, (k + 1) * n + (j + 1) * d), row * d)
    t[row] = tr.process.modelTime(steps[k].t)
    c[row] = BigInt(tr.prompts.condition[j])
    a[row] = steps[k].a
    b[row] = steps[k].b
    s[row] = steps[k].s
    lp[row] = tables.lpOld[j * N + k]
    A[row] = clipAdv(values.adv(j, k))
    w[row] = values.weight(j, k, M)
    kl[row] = tables.klScale?.(k) ?? 0
    if (mu !== undefined) tables.muOld!(j, k, mu, row * d)
  })
  const feeds: Record<string, HostTensor> = {
    x: { data: x, dims: [M, d] },
    x_next: { data: xNext, dims: [M, d] },
    t: { data: t, dims: [M] },
    a: { data: a, dims: [M] },
    b: { data: b, dims: [M] },
    s: { data: s, dims: [M] },
    lp_old: { data: lp, dims: [M] },
    adv: { data: A, dims: [M] },
    w: { data: w, dims: [M] }
  }
  if (conditional) feeds.c = { data: c, dims: [M] }
  if (mu !== undefined) feeds.mu_old = { data: mu, dims: [M, d] }
  if (tables.klScale !== undefined) feeds.kl_scale = { data: kl, dims: [M] }
  return feeds
}

/** The stored log-probs, chains × N (the rollout keeps them step-major). */
export const storedLogProbs = (tr: RolloutBatch): Float64Array => {
  const { chains, logProb } = tr.rollout
  const N = tr.steps.length
  const out = new Float64Array(chains * N)
  for (let k = 0; k < N; k++) for (let j = 0; j < chains; j++) out[j * N + k] = logProb[k * chains + j]
  return out
}

/**
 * μ_old = a·x + b·f_old, with f_old recovered from the x̂0 the sampler stored (x̂0 = cx·x + cf·f):
 * the mean the sampler drew x_next around, without a second forward pass.
 */
export const storedMeans = (tr: RolloutBatch) => (j: number, k: number, out: Float32Array, offset: number) => {
  const { latents, x0Pred, chains, d } = tr.rollout
  const { a, b, x0 } = tr.steps[k]
  const base = k * chains * d + j * d
  for (let i = 0; i < d; i++) {
    const xi = latents![base + i]
    out[offset + i] = a * xi + (b * (x0Pred![base + i] - x0.x * xi)) / x0.f
  }
}

export interface UpdatePlan {
  readonly name: string
  readonly loss: LossBuilder
  readonly lossKey: PolicyLossConfig
  /** The minibatches (lists of rows) of an inner epoch. */
  readonly partition: (epoch: number, rng: RandomStream) => Array<Array<Row>>
  readonly values: RowValues
}

/** Old log-probs (and means) re-computed at θ_old with the loss's own graph (`rescoreOldLogProb`). */
export const rescore = async (
  plan: UpdatePlan,
  tr: RolloutBatch,
  batches: ReadonlyArray<ReadonlyArray<Row>>,
  tables: RowTables,
  params: ParamValues,
  config: UpdateRequest,
  conditional: boolean
): Promise<RowTables> => {
  const specs = velocityNet(plan.lossKey.net).specs
  const session = await cachedSession(`rescore|${JSON.stringify(plan.lossKey)}|${config.threads}`, () => {
    const g = new Graph("policy-logprob")
    logProbGraph(g, plan.lossKey, paramInputs(g, specs, "p."))
    return EngineSession.create(g, { threads: config.threads, optimization: "basic" })
  })
  const N = tr.steps.length
  const d = tr.rollout.d
  const lpOld = new Float64Array(tables.lpOld.length)
  const mus = new Map<number, Float32Array>()
  const weights = Object.fromEntries(specs.map((sp) => [`p.${sp.name}`, { data: params[sp.name], dims: sp.shape }]))
  for (const mb of batches) {
    const { mu_old: _mu, kl_scale: _kl, ...feeds } = rowFeeds(tr, mb, plan.values, tables, conditional)
    const out = await session.run({ ...feeds, ...weights })
    const lp = out.lp.data as Float64Array
    const mu = out.mu?.data as Float64Array | undefined
    mb.forEach(([j, k], q) => {
      lpOld[j * N + k] = lp[q]
      if (mu !== undefined) mus.set(j * N + k, Float32Array.from(mu.subarray(q * d, (q + 1) * d)))
    })
  }
  const muOld = tables.muOld === undefined ?
    undefined
    : (j: number, k: number, out: Float32Array, offset: number) => out.set(mus.get(j * N + k)!, offset)
  return { ...tables, lpOld, muOld }
}
