/**
 * The vector–Jacobian product J_fᵀ v of a velocity / ε network with respect to its input latents —
 * what the adjoint recursion (diffusion/adjoint.ts) asks of a model — as one onnxruntime session with
 * the weights baked in: inputs x, t, c (conditional networks), v; output J_fᵀ v.
 */
import type { Drift, ForwardVjp, Vjp } from "../diffusion/adjoint.ts"
import type { Process } from "../diffusion/process.ts"
import { grad } from "../engine/autodiff.ts"
import { Graph } from "../engine/graph.ts"
import { toOnnx } from "../engine/onnx.ts"
import * as op from "../engine/ops.ts"
import { paramInputs, type ParamValues } from "../engine/params.ts"
import { EngineSession } from "../engine/session.ts"
import { networkPolicy } from "./network-policy.ts"
import { velocityNet, type VelocityNetConfig } from "./networks.ts"

export const networkVjp = async (opts: {
  readonly net: VelocityNetConfig
  readonly params: ParamValues
  readonly process: Process
  readonly threads: number
  /** Class of each row, for conditional networks. */
  readonly condition?: Int32Array
}): Promise<{ readonly vjp: Vjp; readonly forwardVjp: ForwardVjp; readonly release: () => Promise<void> }> => {
  const { net } = opts
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
  const session = await EngineSession.fromBytes("velocity-vjp", toOnnx(g, { initializers: opts.params }), {
    threads: opts.threads
  })
  if (net.classes > 0 && opts.condition === undefined) {
    throw new Error(`networkVjp: a ${net.classes}-class network needs a condition per row`)
  }
  const classes = opts.condition === undefined ? undefined : BigInt64Array.from(opts.condition, (k) => BigInt(k))
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
    release: () => session.release()
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
      await policy.session.release()
    }
  }
}
