/**
 * Train steps: forward, loss, backward, gradient-norm clipping and AdamW in one ONNX model
 * ("graph" update), or forward/backward in the model and AdamW in a JS loop ("js" update); the
 * benchmark compares the two. Weights and optimizer state are graph inputs, so one session serves
 * every step, and each step's outputs are fed straight back as the next step's inputs.
 *
 * AdamW follows PyTorch (bias-corrected, decoupled weight decay):
 *   m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,
 *   p ← p − lr·wd·p − lr_t · m / (√v + ε̂),  lr_t = lr √(1−β2ᵗ)/(1−β1ᵗ),  ε̂ = ε √(1−β2ᵗ)
 * after clipping g to total norm ≤ maxGradNorm (coefficient min(1, max/(‖g‖ + 1e-6))).
 */
import type { ParamSpec, ParamValues } from "./params.ts"
import { sizeOf } from "./params.ts"
import { cachedSession, isCached } from "./session-cache.ts"
import { EngineSession, type HostTensor } from "./session.ts"
import {
  type AdamConfig,
  buildTrainStep,
  DEFAULT_ADAM,
  type LossBuilder,
  TrainError,
  type UpdateSide
} from "./train-step.ts"

export interface TrainState {
  readonly params: ParamValues
  readonly m: ParamValues
  readonly v: ParamValues
  /** Optimizer steps taken. */
  readonly step: number
}

export interface StepResult {
  readonly loss: number
  readonly gradNorm: number
  readonly metrics: Readonly<Record<string, number>>
  readonly extra: Readonly<Record<string, HostTensor>>
}

/**
 * The decay of a weight EMA after optimizer step n, warmed up as min((1 + n)/(10 + n), decay): the
 * schedule of common diffusion training code and of flow_grpo's EMAModuleWrapper.
 */
export const emaDecay = (n: number, decay: number): number => Math.min((1 + n) / (10 + n), decay)

const zerosLike = (values: ParamValues): ParamValues =>
  Object.fromEntries(Object.entries(values).map(([k, v]) => [k, new Float32Array(v.length)]))

type Moments = { readonly p: ParamValues; readonly m: ParamValues; readonly v: ParamValues }

/**
 * Buffer sets released trainers no longer need (their state before the last step), one per parameter
 * layout: the next trainer of that layout writes its first step into one instead of fresh memory and its
 * page faults (an RL update builds a trainer every iteration; docs/performance.md). A state a
 * trainer returned, or was given, is never pooled.
 */
const SPARE = new Map<string, Moments>()
const layoutOf = (specs: ReadonlyArray<ParamSpec>) => specs.map((s) => `${s.name}:${s.shape.join("x")}`).join(",")

export class Trainer {
  private params: ParamValues
  private m: ParamValues
  private v: ParamValues
  private steps: number
  /** The buffers the next in-graph step writes into; the state it reads is the other set. */
  private spare: Moments | undefined
  /** Whether the current state's buffers are the trainer's own (the initial state is never written). */
  private owned = false

  private constructor(
    readonly session: EngineSession,
    readonly specs: ReadonlyArray<ParamSpec>,
    readonly adam: AdamConfig,
    readonly update: UpdateSide,
    state: TrainState,
    spare?: Moments
  ) {
    this.spare = spare
    this.params = state.params
    this.m = state.m
    this.v = state.v
    this.steps = state.step
  }

  static async create(opts: {
    readonly name: string
    readonly specs: ReadonlyArray<ParamSpec>
    readonly loss: LossBuilder
    readonly adam?: AdamConfig
    readonly update?: UpdateSide
    readonly threads: number
    readonly init: ParamValues | TrainState
    /** Graph optimization level (RL losses use "basic" so their forward matches the rescore graph bit for bit). */
    readonly optimization?: "basic" | "all"
    /** Reuse the session built under this key earlier in the process (same graph, same settings). */
    readonly sessionKey?: string
    /**
     * The caller gives the initial state's buffers up: once a step has replaced that state, the trainer
     * may write later steps into them and, after its release, so may the next trainer of its layout.
     */
    readonly donate?: boolean
  }): Promise<Trainer> {
    const adam = opts.adam ?? DEFAULT_ADAM
    const update = opts.update ?? "graph"
    const build = () =>
      EngineSession.create(buildTrainStep(opts.name, opts.specs, opts.loss, adam, update), {
        threads: opts.threads,
        ...(opts.optimization ? { optimization: opts.optimization } : {})
      })
    const session = opts.sessionKey === undefined
      ? await build()
      : await cachedSession(`${opts.sessionKey}|${update}|${JSON.stringify(adam)}|${opts.threads}`, build)
    const state: TrainState = "step" in opts.init
      ? (opts.init as TrainState)
      : {
        params: opts.init as ParamValues,
        m: zerosLike(opts.init as ParamValues),
        v: zerosLike(opts.init as ParamValues),
        step: 0
      }
    for (const s of opts.specs) {
      const have = state.params[s.name]
      if (have === undefined || have.length !== sizeOf(s.shape)) {
        throw new TrainError({
          model: opts.name,
          message: `${opts.name}: initial value of ${s.name} should have ${sizeOf(s.shape)} values, has ${
            have?.length ?? "none"
          }`
        })
      }
    }
    const layout = layoutOf(opts.specs)
    const spare = update === "graph" ? SPARE.get(layout) : undefined
    SPARE.delete(layout)
    const trainer = new Trainer(session, opts.specs, adam, update, state, spare)
    trainer.owned = opts.donate === true
    return trainer
  }

  /**
   * The current state. With the in-graph update its buffers are reused two steps later, by this trainer
   * or, after its release, by the next trainer of its layout: copy to keep any but the last.
   */
  get state(): TrainState {
    return { params: this.params, m: this.m, v: this.v, step: this.steps }
  }

  /** One optimizer step on a batch; a non-finite loss or gradient stops before any state changes. */
  async step(batch: Readonly<Record<string, HostTensor>>, lr = this.adam.lr): Promise<StepResult> {
    const t = this.steps + 1
    const { beta1, beta2, eps, weightDecay, maxGradNorm } = this.adam
    const bc2 = Math.sqrt(1 - beta2 ** t)
    const stepSize = (lr * bc2) / (1 - beta1 ** t)
    const feeds: Record<string, HostTensor> = { ...batch }
    for (const s of this.specs) feeds[`p.${s.name}`] = { data: this.params[s.name], dims: s.shape }
    if (this.update === "graph") {
      for (const s of this.specs) {
        feeds[`m.${s.name}`] = { data: this.m[s.name], dims: s.shape }
        feeds[`v.${s.name}`] = { data: this.v[s.name], dims: s.shape }
      }
      feeds["adam.step_size"] = { data: Float32Array.of(stepSize), dims: [] }
      feeds["adam.eps_hat"] = { data: Float32Array.of(eps * bc2), dims: [] }
      feeds["adam.decay"] = { data: Float32Array.of(lr * weightDecay), dims: [] }
      feeds["adam.max_norm"] = { data: Float32Array.of(Number.isFinite(maxGradNorm) ? maxGradNorm : 3.4e38), dims: [] }
    }
    let target: Moments | undefined
    const into: Record<string, HostTensor> = {}
    if (this.update === "graph") {
      target = this.spare ?? { p: zerosLike(this.params), m: zerosLike(this.params), v: zerosLike(this.params) }
      for (const s of this.specs) {
        for (const k of ["p", "m", "v"] as const) {
          into[`next.${k}.${s.name}`] = { data: target[k][s.name], dims: s.shape }
        }
      }
    }
    const out = await this.session.run(feeds, into)
    const loss = out.loss.data[0] as number
    const gradNorm = out.grad_norm.data[0] as number
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      throw new TrainError({
        model: this.session.name,
        message:
          `${this.session.name}: step ${t}: loss ${loss}, gradient norm ${gradNorm}; the weights were not updated`
      })
    }
    if (target !== undefined) {
      this.spare = this.owned ? { p: this.params, m: this.m, v: this.v } : undefined
      this.params = target.p
      this.m = target.m
      this.v = target.v
      this.owned = true
    } else {
      this.adamInJs(out, gradNorm, stepSize, eps * bc2, lr * weightDecay)
    }
    this.steps = t
    const metrics = Object.fromEntries(
      Object.entries(out).filter(([k]) => k.startsWith("metric.")).map(([k, v]) => [k.slice(7), v.data[0] as number])
    )
    const extra = Object.fromEntries(
      Object.entries(out).filter(([k]) => k.startsWith("extra.")).map(([k, v]) => [k.slice(6), v])
    )
    return { loss, gradNorm, metrics, extra }
  }

  private adamInJs(out: Record<string, HostTensor>, norm: number, stepSize: number, epsHat: number, decay: number) {
    const { beta1, beta2, maxGradNorm } = this.adam
    const coef = Math.min(1, maxGradNorm / (norm + 1e-6))
    for (const s of this.specs) {
      const g = out[`grad.${s.name}`].data as Float32Array
      const p = this.params[s.name]
      const m = this.m[s.name]
      const v = this.v[s.name]
      for (let i = 0; i < p.length; i++) {
        const gi = g[i] * coef
        m[i] = beta1 * m[i] + (1 - beta1) * gi
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
        p[i] = p[i] - decay * p[i] - (stepSize * m[i]) / (Math.sqrt(v[i]) + epsHat)
      }
    }
  }

  /** Releases the session unless it is shared through the session cache. */
  release() {
    if (this.spare !== undefined) SPARE.set(layoutOf(this.specs), this.spare)
    this.spare = undefined
    return isCached(this.session) ? Promise.resolve() : this.session.release()
  }
}
