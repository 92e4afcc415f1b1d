import { describe, expect, it } from "vitest"
import { grad } from "../../engine/autodiff.ts"
import { Graph } from "../../engine/graph.ts"
import { LanedSession } from "../../engine/lanes.ts"
import { toOnnx } from "../../engine/onnx.ts"
import * as op from "../../engine/ops.ts"
import { initParams, paramInputs, type ParamValues } from "../../engine/params.ts"
import { EngineSession, type HostTensor } from "../../engine/session.ts"
import { velocityGraph } from "../../models/network-policy.ts"
import { velocityNet } from "../../models/velocity-net.ts"
import { openStream } from "../../random/streams.ts"

const net = { dim: 784, hidden: 512, blocks: 3, timeFeatures: 64, classes: 10 }
const specs = velocityNet(net).specs.map((s) => ({ ...s, init: { std: 0.05 } }))
const weights = (seed: string): ParamValues => initParams(specs, openStream(["lanes", seed]))

/** The velocity network's VJP graph (models/network-vjp.ts builds the same one). */
const vjpGraph = () => {
  const model = velocityNet(net)
  const g = new Graph("velocity-vjp")
  const p = paramInputs(g, model.specs)
  const x = g.input("x", "float32", ["B", net.dim])
  const t = g.input("t", "float32", ["B"])
  const c = g.input("c", "int64", ["B"])
  const v = g.input("v", "float32", ["B", net.dim])
  const f = model.forward(g, p, x, t, c)
  g.output("jtv", grad(op.reduceSum(op.mul(f, v), [0, 1]), [x])[0]!)
  g.output("f", f)
  return g
}

const rows = (B: number, seed: number): Record<string, HostTensor> => ({
  x: { data: Float32Array.from({ length: B * net.dim }, (_, i) => Math.sin(i * 0.01 + seed)), dims: [B, net.dim] },
  t: { data: Float32Array.from({ length: B }, (_, i) => 100 + 7 * i), dims: [B] },
  c: { data: BigInt64Array.from({ length: B }, (_, i) => BigInt(i % 11)), dims: [B] },
  v: { data: Float32Array.from({ length: B * net.dim }, (_, i) => Math.cos(i * 0.02 + seed)), dims: [B, net.dim] }
})

const bitsEqual = (a: HostTensor, b: HostTensor) => {
  expect(a.dims).toEqual(b.dims)
  expect(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength))
    .toEqual(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength))
}

describe("row lanes", () => {
  const graphs = { forward: () => velocityGraph(net), vjp: vjpGraph }

  // 128 rows split 64/64; 45 split 22/23; 20 rows run on the calling thread alone (below two lanes' minimum).
  it.each(
    Object.keys(graphs).flatMap((name) => [128, 45, 20].map((B) => [name as keyof typeof graphs, B] as const))
  )("run the %s graph on %i rows to the bits of one 2-thread session", async (name, B) => {
    const params = weights("baked")
    const single = await EngineSession.fromBytes(name, toOnnx(graphs[name](), { initializers: params }), {
      threads: 2
    })
    const laned = await LanedSession.fromGraph(graphs[name](), { lanes: 2, initializers: params })
    const feeds = Object.fromEntries(
      Object.entries(rows(B, 1)).filter(([k]) => graphs[name]().inputs.some((i) => i.name === k))
    )
    const [a, b] = [await single.run(feeds), await laned.run(feeds)]
    for (const k of Object.keys(a)) bitsEqual(b[k], a[k])
    await Promise.all([single.release(), laned.release()])
  })

  it("refuse a graph with an output that has no batch axis, naming it", async () => {
    const g = new Graph("sums")
    const x = g.input("x", "float32", ["B", 3])
    g.output("total", op.reduceSum(x, [0, 1]))
    await expect(LanedSession.fromGraph(g, { lanes: 2 })).rejects.toThrow(/sums: .*total/)
  })

  it("name the model when a lane cannot run the rows it is given", async () => {
    const laned = await LanedSession.fromGraph(velocityGraph(net), { lanes: 2, initializers: weights("bad") })
    const feeds = rows(64, 3)
    delete feeds.v
    feeds.x = { data: new Float32Array(64 * 5), dims: [64, 5] }
    await expect(laned.run(feeds)).rejects.toThrow(/velocity: /)
    await laned.release()
  })
})
