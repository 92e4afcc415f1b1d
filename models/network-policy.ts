/**
 * A trained velocity / ε network as a Policy: a laned session with the weights baked in (faster
 * small-batch forwards, docs/onnxruntime.md), or one session per network shape with the weights fed
 * on every call (no session to build for weights used once), with classifier-free guidance when a
 * scale is given.
 */
import type { Policy } from "../diffusion/policy.ts"
import type { Parameterization, Process } from "../diffusion/process.ts"
import { Graph } from "../engine/graph.ts"
import { LanedSession } from "../engine/lanes.ts"
import { paramInputs, type ParamValues } from "../engine/params.ts"
import { cachedSession } from "../engine/session-cache.ts"
import { EngineSession, ownedSession } from "../engine/session.ts"
import { describeNet, velocityNet, type VelocityNetConfig } from "./velocity-net.ts"

/** The inference graph f(x, t, c) (guided when `cfg` is given), weights as inputs. */
export const velocityGraph = (net: VelocityNetConfig, cfg?: number) => {
  const model = velocityNet(net)
  const g = new Graph("velocity")
  const p = paramInputs(g, model.specs)
  const x = g.input("x", "float32", ["B", net.dim])
  const t = g.input("t", "float32", ["B"])
  const c = net.classes > 0 ? g.input("c", "int64", ["B"]) : undefined
  const f = cfg === undefined || c === undefined ? model.forward(g, p, x, t, c) : model.guided(g, p, x, t, c, cfg)
  g.output("f", f)
  return g
}

export const networkPolicy = async (opts: {
  readonly net: VelocityNetConfig
  readonly params: ParamValues
  readonly process: Process
  readonly parameterization: Parameterization
  readonly shape: ReadonlyArray<number>
  /** Classifier-free guidance scale (1 = plain conditional model). */
  readonly cfg: number
  readonly threads: number
  /** The weights are frozen (a base model): the session is built once for them and kept. */
  readonly frozen?: boolean
  /**
   * Weights as inputs of one session per network shape, shared (default: baked into a session of their
   * own). A training rollout samples each iteration's weights once, and building a baked session costs
   * more than its forwards lose with fed weights (docs/performance.md). Outputs agree to float32
   * rounding (~3e-6), not bit for bit: an exported or evaluated policy stays baked.
   */
  readonly weightsAsInputs?: boolean
}): Promise<Policy & { readonly release: () => Promise<void> }> => {
  const guided = opts.net.classes > 0 && opts.cfg !== 1
  const cfg = guided ? opts.cfg : undefined
  const fed = opts.weightsAsInputs === true
  // Baked weights: rows split over one 1-thread lane per thread (engine/lanes.ts). Fed weights run in one
  // 2-thread session, which packs them once per call where each lane would (docs/performance.md).
  const bake = () =>
    LanedSession.fromGraph(velocityGraph(opts.net, cfg), { lanes: opts.threads, initializers: opts.params })
  const session = fed
    ? await cachedSession(
      `velocity-fed|${JSON.stringify(opts.net)}|${cfg ?? 1}|${opts.threads}`,
      () => EngineSession.create(velocityGraph(opts.net, cfg), { threads: opts.threads })
    )
    : opts.frozen === true
    ? await ownedSession(opts.params, `velocity|${cfg ?? 1}|${opts.threads}`, bake)
    : await bake()
  const weights = fed
    ? Object.fromEntries(velocityNet(opts.net).specs.map((s) => [s.name, { data: opts.params[s.name], dims: s.shape }]))
    : {}
  return {
    name: describeNet(opts.net),
    shape: opts.shape,
    process: opts.process,
    parameterization: opts.parameterization,
    // Shared and frozen sessions stay open; a policy's own baked session closes.
    release: () => (fed || opts.frozen === true ? Promise.resolve() : session.release()),
    predict: async (x, batch, t, condition) => {
      const feeds: Record<string, { data: Float32Array | BigInt64Array; dims: ReadonlyArray<number> }> = {
        ...weights,
        x: { data: x, dims: [batch, opts.net.dim] },
        t: { data: new Float32Array(batch).fill(opts.process.modelTime(t)), dims: [batch] }
      }
      if (opts.net.classes > 0) {
        if (condition === undefined) {
          throw new Error(`${opts.net.classes}-class velocity network needs a condition per latent`)
        }
        feeds.c = { data: BigInt64Array.from(condition, (v) => BigInt(v)), dims: [batch] }
      }
      return (await session.run(feeds)).f.data as Float32Array
    }
  }
}
