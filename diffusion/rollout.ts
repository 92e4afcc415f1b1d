/**
 * Rollout: run a sampler with a policy over a time grid for a batch of chains, recording every
 * transition. Latents are float32 between steps (as a network's would be, and as they are stored),
 * and each log-prob is computed from the float32 latents actually stored, in float64, so
 * recomputing it from a stored trajectory gives the same number: the on-policy ratio is exactly 1.
 *
 * Randomness: chain j draws its initial noise from `initStream(j)` and its step noise from
 * `stepStream(j)`, so results do not depend on the batch size, and chains may share initial noise.
 */
import { stepNoise } from "../random/prefetch.ts"
import type { RandomStream } from "../random/streams.ts"
import { checkGrid } from "./grids.ts"
import { logProbOfSquares, type Reduce } from "./logprob.ts"
import type { Policy } from "./policy.ts"
import { latentSize } from "./policy.ts"
import { ode, type Sampler, type StepContext, type Transition } from "./samplers.ts"

export interface RolloutSpec {
  readonly policy: Policy
  readonly sampler: Sampler
  /** The sampler's noise level (η, λ or a). */
  readonly noise: number
  readonly grid: ReadonlyArray<number>
  readonly chains: number
  readonly initStream: (chain: number) => RandomStream
  readonly stepStream: (chain: number) => RandomStream
  /** Condition (class index) of each chain, for conditional policies. */
  readonly condition?: Int32Array | undefined
  /** Steps that use the stochastic sampler; the others take the ODE step (MixGRPO's window). Default: all. */
  readonly stochastic?: ((step: number) => boolean) | undefined
  /** Keep every latent, x̂0 and model output (for trajectory tables); otherwise only the final latents. */
  readonly record?: boolean
  readonly reduce?: Reduce
}

export interface StepRecord extends Transition {
  readonly step: number
  readonly t: number
  readonly tNext: number
}

export interface Rollout {
  readonly chains: number
  readonly d: number
  readonly shape: ReadonlyArray<number>
  readonly steps: ReadonlyArray<StepRecord>
  /** Final latents, chains × d. */
  readonly final: Float32Array
  /** Latents x_0 … x_N, (N + 1) × chains × d, when recorded. */
  readonly latents?: Float32Array | undefined
  /** x̂0 at every step, N × chains × d, when recorded. */
  readonly x0Pred?: Float32Array | undefined
  /** Log-prob of every transition, N × chains (NaN where the step is deterministic). */
  readonly logProb: Float64Array
}

/** Validates the spec before any work; errors name the field at fault. */
const check = (spec: RolloutSpec) => {
  checkGrid(spec.grid)
  if (!Number.isInteger(spec.chains) || spec.chains < 1) {
    throw new Error(`rollout: chains must be a positive integer, got ${spec.chains}`)
  }
  if (!(spec.noise >= 0)) throw new Error(`rollout: noise level must be ≥ 0, got ${spec.noise}`)
  if (spec.condition !== undefined && spec.condition.length !== spec.chains) {
    throw new Error(`rollout: condition has ${spec.condition.length} entries for ${spec.chains} chains`)
  }
}

/** The transition of every step, computed (and validated) before sampling starts. */
export const transitions = (
  spec: Pick<RolloutSpec, "policy" | "sampler" | "noise" | "grid" | "stochastic">
): Array<StepRecord> =>
  spec.grid.slice(0, -1).map((t, step) => {
    const ctx: StepContext = {
      process: spec.policy.process,
      parameterization: spec.policy.parameterization,
      grid: spec.grid,
      step
    }
    const stochastic = spec.stochastic?.(step) ?? true
    return { ...(stochastic ? spec.sampler(ctx, spec.noise) : ode(ctx, 0)), step, t, tNext: spec.grid[step + 1] }
  })

/**
 * One chain's step: the next latent (float32, as stored) and the squared residual of that stored value
 * from the mean — the same residual transitionLogProb recomputes from a stored transition, bit for bit —
 * and, when recording, x̂0 = cx·x + cf·f in the same pass (reading x and f once: 3.1 → 2.3 ns per element).
 * A small monomorphic function of its own, so the engine optimises the hottest loop of a rollout.
 */
const advance = (
  o: number,
  d: number,
  a: number,
  b: number,
  s: number,
  x: Float32Array,
  f: Float32Array,
  z: Float64Array,
  next: Float32Array,
  x0: { readonly cx: number; readonly cf: number; readonly out: Float32Array } | undefined
): number => {
  let sq = 0
  const [cx, cf, out] = x0 === undefined ? [0, 0, undefined] : [x0.cx, x0.cf, x0.out]
  for (let i = o; i < o + d; i++) {
    const xi = x[i]
    const fi = f[i]
    const mu = a * xi + b * fi
    const v = Math.fround(s > 0 ? mu + s * z[i - o] : mu)
    next[i] = v
    if (out !== undefined) out[i] = cx * xi + cf * fi
    sq += (v - mu) * (v - mu)
  }
  return sq
}

/** out[o + i] = c · z[i]: the initial latents (a function of its own, like `advance`, so it is optimised). */
const scaleInto = (out: Float32Array, o: number, c: number, z: Float64Array): void => {
  for (let i = 0; i < z.length; i++) out[o + i] = c * z[i]
}

export const rollout = async (spec: RolloutSpec): Promise<Rollout> => {
  check(spec)
  const { policy, chains } = spec
  const d = latentSize(policy.shape)
  const steps = transitions(spec)
  const N = steps.length
  const n = chains * d
  const record = spec.record ?? false
  const latents = record ? new Float32Array((N + 1) * n) : undefined
  const x0Pred = record ? new Float32Array(N * n) : undefined
  const logProb = new Float64Array(N * chains)
  const stepStreams = Array.from({ length: chains }, (_, j) => spec.stepStream(j))
  const z = new Float64Array(d)

  let x = latents?.subarray(0, n) ?? new Float32Array(n)
  const prior = policy.process.priorStd(spec.grid[0])
  for (let j = 0; j < chains; j++) scaleInto(x, j * d, prior, spec.initStream(j).fillNormal(z))

  const noise = stepNoise(stepStreams, steps.map((st) => st.s > 0), d)
  for (let k = 0; k < N; k++) {
    const { a, b, s, logProb: convention } = steps[k]
    const f = await policy.predict(x, chains, steps[k].t, spec.condition)
    await noise.ready(k)
    // Recorded rollouts write x_{k+1} straight into the trajectory (no per-step copy to collect).
    const next = latents?.subarray((k + 1) * n, (k + 2) * n) ?? new Float32Array(n)
    const x0 = x0Pred === undefined
      ? undefined
      : { cx: steps[k].x0.x, cf: steps[k].x0.f, out: x0Pred.subarray(k * n, (k + 1) * n) }
    for (let j = 0; j < chains; j++) {
      const zj = noise.at(k, j)
      const sq = advance(j * d, d, a, b, s, x, f, zj, next, x0)
      logProb[k * chains + j] = s > 0 ? logProbOfSquares(sq, d, s, convention, spec.reduce) : Number.NaN
    }
    x = next
  }
  await noise.done()
  return {
    chains,
    d,
    shape: policy.shape,
    steps,
    final: latents === undefined ? x : x.slice(),
    latents,
    x0Pred,
    logProb
  }
}
