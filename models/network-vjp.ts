/**
 * The vector–Jacobian product J_fᵀ v of a velocity / ε network with respect to its input latents —
 * what the adjoint recursion (diffusion/adjoint.ts) asks of a model — as a laned session (engine/lanes.ts)
 * with the weights baked in: inputs x, t, c (conditional networks), v; output J_fᵀ v.
 */
import type { Drift, ForwardVjp, FusedLeanAdjoint, Vjp } from "../diffusion/adjoint.ts"
import type { Process } from "../diffusion/process.ts"
import { grad } from "../engine/autodiff.ts"
import { Graph } from "../engine/graph.ts"
import { LanedSession } from "../engine/lanes.ts"
import { toOnnx } from "../engine/onnx.ts"
import * as op from "../engine/ops.ts"
import { paramInputs, type ParamValues } from "../engine/params.ts"
import { EngineSession, type HostTensor, ownedSession } from "../engine/session.ts"
import { networkPolicy } from "./network-policy.ts"
import { velocityNet, type VelocityNetConfig } from "./velocity-net.ts"

/** The VJP graph: inputs x, t, c (conditional networks), v and the weights; outputs J_fᵀ v and f. */
const vjpGraph = (net: VelocityNetConfig): Graph => {
  const model = velocityNet(net)
  const g = new Graph("velocity-vjp")
  const p = paramInputs(g, model.specs)
  const x = g.input("x", "float32", ["B", net.dim])
  const t = g.input("t", "float32", ["B"])
  const c = net.classes > 0 ? g.input("c", "int64", ["B"]) : undefined
  const v = g.input("v", "float32", ["B", net.dim])
  const f = model.forward(g, p, x, t, c)
  // ⟨f, v⟩ summed over the batch: rows are independent, so its gradient is each row's J_fᵀ v.
  const [jtv] = grad(op.reduceSum(op.mul(f, v), [0, 1]), [x])
  g.output("jtv", jtv!)
  // The forward of the same pass: adjoint matching's loss needs f_base where the adjoint was computed.
  g.output("f", f)
  return g
}

/** The rows' classes as the graphs' int64 input `c`; a conditional network needs one per row. */
const rowClasses = (who: string, net: VelocityNetConfig, condition: Int32Array | undefined) => {
  if (net.classes > 0 && condition === undefined) {
    throw new Error(`${who}: a ${net.classes}-class network needs a condition per row`)
  }
  return condition === undefined ? undefined : BigInt64Array.from(condition, (k) => BigInt(k))
}

export const networkVjp = async (opts: {
  readonly net: VelocityNetConfig
  readonly params: ParamValues
  readonly process: Process
  readonly threads: number
  /** Class of each row, for conditional networks. */
  readonly condition?: Int32Array | undefined
  /** The weights are frozen (a base model): the session is built once for them and kept. */
  readonly frozen?: boolean
}): Promise<{ readonly vjp: Vjp; readonly forwardVjp: ForwardVjp; readonly release: () => Promise<void> }> => {
  const { net } = opts
  // Rows are independent: the batch is split over one 1-thread lane per thread (engine/lanes.ts).
  const build = () => LanedSession.fromGraph(vjpGraph(net), { lanes: opts.threads, initializers: opts.params })
  const session = opts.frozen === true
    ? await ownedSession(opts.params, `velocity-vjp|${opts.threads}`, build)
    : await build()
  const classes = rowClasses("networkVjp", net, opts.condition)
  const forwardVjp: ForwardVjp = async (xs, batch, time, cotangent) => {
    const feeds = {
      x: { data: xs, dims: [batch, net.dim] },
      t: { data: new Float32Array(batch).fill(opts.process.modelTime(time)), dims: [batch] },
      v: { data: cotangent, dims: [batch, net.dim] },
      ...(classes === undefined ? {} : { c: { data: classes, dims: [batch] } })
    }
    const out = await session.run(feeds)
    return { f: out.f.data as Float32Array, jtv: out.jtv.data as Float32Array }
  }
  return {
    vjp: async (xs, batch, time, cotangent) => (await forwardVjp(xs, batch, time, cotangent)).jtv,
    forwardVjp,
    release: () => (opts.frozen === true ? Promise.resolve() : session.release())
  }
}

/**
 * The lean adjoint's recursion over `steps` steps as one graph: from `terminal` (a_S), for i = S − 1 … 0,
 * f_i = f(x_i, t_i) and a_i = a_i·a_{i+1} + b_i·J_fᵀ a_{i+1} (diffusion/adjoint.ts `leanAdjoint`, the
 * same products as `vjpGraph`'s); outputs `adjoint<i>` and `f<i>`. The weights are shared by every step.
 */
const leanAdjointGraph = (net: VelocityNetConfig, steps: number): Graph => {
  const model = velocityNet(net)
  const g = new Graph("lean-adjoint")
  const p = paramInputs(g, model.specs)
  const c = net.classes > 0 ? g.input("c", "int64", ["B"]) : undefined
  let next = g.input("terminal", "float32", ["B", net.dim])
  for (let i = steps - 1; i >= 0; i--) {
    const x = g.input(`x${i}`, "float32", ["B", net.dim])
    const f = model.forward(g, p, x, g.input(`t${i}`, "float32", ["B"]), c)
    const [jtv] = grad(op.reduceSum(op.mul(f, next), [0, 1]), [x])
    next = op.add(op.mul(next, g.input(`a${i}`, "float32", [])), op.mul(jtv!, g.input(`b${i}`, "float32", [])))
    g.output(`adjoint${i}`, next)
    g.output(`f${i}`, f)
  }
  return g
}

/**
 * The frozen base's lean adjoint over a window in one call per lane (diffusion/adjoint.ts
 * `FusedLeanAdjoint`): rows are independent at every step, so each lane runs its rows' whole recursion
 * and the lanes join once, not at every step (no per-step slicing, hand-over, join and concatenation).
 * Faster than step by step (docs/performance.md); the session is built once per window length and kept
 * with the weights. f_i comes out of the same forward products as the step-wise VJP graph's f, bit for
 * bit (tested), so a replay recomputing f_base step by step trains on the same numbers.
 */
export const networkLeanAdjoint = (opts: {
  readonly net: VelocityNetConfig
  readonly params: ParamValues
  readonly process: Process
  readonly threads: number
  /** Class of each row, for conditional networks. */
  readonly condition?: Int32Array | undefined
}): FusedLeanAdjoint => {
  const { net } = opts
  const classes = rowClasses("networkLeanAdjoint", net, opts.condition)
  return async ({ steps, latents, batch, terminal }) => {
    const S = steps.length
    const session = await ownedSession(
      opts.params,
      `lean-adjoint|${opts.threads}|${S}`,
      () => LanedSession.fromGraph(leanAdjointGraph(net, S), { lanes: opts.threads, initializers: opts.params })
    )
    const feeds: Record<string, HostTensor> = {
      terminal: { data: terminal, dims: [batch, net.dim] },
      ...(classes === undefined ? {} : { c: { data: classes, dims: [batch] } })
    }
    steps.forEach((step, i) => {
      feeds[`x${i}`] = { data: latents[i], dims: [batch, net.dim] }
      feeds[`t${i}`] = { data: new Float32Array(batch).fill(opts.process.modelTime(step.t)), dims: [batch] }
      feeds[`a${i}`] = { data: Float32Array.of(step.a), dims: [] }
      feeds[`b${i}`] = { data: Float32Array.of(step.b), dims: [] }
    })
    const out = await session.run(feeds)
    return {
      adjoints: steps.map((_, i) => out[`adjoint${i}`].data as Float32Array),
      outputs: steps.map((_, i) => out[`f${i}`].data as Float32Array)
    }
  }
}

/** A network's forward and VJP at fixed conditions (one per row): what the value adjoint asks of a drift. */
export const networkDrift = async (opts: Parameters<typeof networkVjp>[0]): Promise<
  Drift & { readonly release: () => Promise<void> }
> => {
  const policy = await networkPolicy({ ...opts, parameterization: "velocity", shape: [opts.net.dim], cfg: 1 })
  const { vjp, forwardVjp, release } = await networkVjp(opts)
  return {
    forward: async (x, batch, t) => policy.predict(x, batch, t, opts.condition),
    vjp,
    forwardVjp,
    release: async () => {
      await release()
      await policy.release()
    }
  }
}

/**
 * One step of the value adjoint (diffusion/adjoint.ts `valueAdjoint`) as one session: both networks'
 * forwards and one backward pass, a_k = a·a_{k+1} + ∇ₓ[b⟨f_θ, a_{k+1}⟩ + b²‖f_θ − f_base‖²/(2 s²)], with the
 * base's weights baked in (built once per base) and the current weights fed per call. Returns a_k and
 * f_base(x_k) (what the loss reuses). Four session calls per step become one.
 */
export const valueAdjointStep = async (opts: {
  readonly net: VelocityNetConfig
  readonly base: ParamValues
  readonly process: Process
  readonly threads: number
}) => {
  const { net } = opts
  const session = await ownedSession(opts.base, `value-adjoint-step|${opts.threads}`, () => {
    const model = velocityNet(net)
    const g = new Graph("value-adjoint-step")
    const theta = paramInputs(g, model.specs, "theta.")
    const frozen = paramInputs(g, model.specs, "base.")
    const x = g.input("x", "float32", ["B", net.dim])
    const t = g.input("t", "float32", ["B"])
    const c = net.classes > 0 ? g.input("c", "int64", ["B"]) : undefined
    const next = g.input("next", "float32", ["B", net.dim])
    const [a, b, inverseVariance] = ["a", "b", "inverse_variance"].map((n) => g.input(n, "float32", []))
    const fc = model.forward(g, theta, x, t, c)
    const fb = model.forward(g, frozen, x, t, c)
    const running = op.mul(
      op.reduceSum(op.square(op.sub(fc, fb)), [0, 1]),
      op.mul(op.mul(op.square(b), inverseVariance), 0.5)
    )
    const [dx] = grad(op.add(op.mul(op.reduceSum(op.mul(fc, next), [0, 1]), b), running), [x])
    g.output("adjoint", op.add(op.mul(next, a), dx!))
    g.output("f_base", fb)
    const initializers = Object.fromEntries(Object.entries(opts.base).map(([k, v]) => [`base.${k}`, v]))
    return EngineSession.fromBytes("value-adjoint-step", toOnnx(g, { initializers }), { threads: opts.threads })
  })
  return async (step: {
    readonly params: ParamValues
    readonly x: Float32Array
    readonly batch: number
    readonly t: number
    readonly condition?: Int32Array | undefined
    readonly next: Float32Array
    readonly a: number
    readonly b: number
    readonly variance: number
  }) => {
    const scalar = (v: number) => ({ data: Float32Array.of(v), dims: [] })
    const out = await session.run({
      ...Object.fromEntries(
        velocityNet(net).specs.map((sp) => [`theta.${sp.name}`, { data: step.params[sp.name], dims: sp.shape }])
      ),
      x: { data: step.x, dims: [step.batch, net.dim] },
      t: { data: new Float32Array(step.batch).fill(opts.process.modelTime(step.t)), dims: [step.batch] },
      ...(step.condition === undefined
        ? {}
        : { c: { data: BigInt64Array.from(step.condition, (k) => BigInt(k)), dims: [step.batch] } }),
      next: { data: step.next, dims: [step.batch, net.dim] },
      a: scalar(step.a),
      b: scalar(step.b),
      inverse_variance: scalar(1 / step.variance)
    })
    return { adjoint: out.adjoint.data as Float32Array, fBase: out.f_base.data as Float32Array }
  }
}
