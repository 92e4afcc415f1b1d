import { describe, expect, it } from "vitest"
import { grad } from "../../engine/autodiff.ts"
import { Graph, GraphError } from "../../engine/graph.ts"
import { importOnnx } from "../../engine/onnx-import.ts"
import { toOnnx } from "../../engine/onnx.ts"
import * as op from "../../engine/ops.ts"
import { initParams } from "../../engine/params.ts"
import { EngineSession } from "../../engine/session.ts"
import { classifierNet } from "../../models/networks.ts"
import { openStream } from "../../random/streams.ts"
import {
  classifierGradient,
  gmmPosteriorGradient,
  inkGradient,
  outerRingGradient,
  quadraticGradient,
  type RewardGradient
} from "../../rewards/gradients.ts"
import {
  gmmPosteriorReward,
  inkReward,
  outerRingReward,
  quadraticReward,
  type RewardContext,
  type RewardModel
} from "../../rewards/rewards.ts"
import { classifierSession } from "../../training/classifier.ts"

const net = { dim: 784, hidden: 32, layers: 2, classes: 10 }
const params = initParams(classifierNet(net).specs, openStream(["import-test"]))
const count = 6
const rng = openStream(["import-test", "x"])
// Latents inside (−1, 1): the pixel map does not clip, so d pixel / d latent = ½ everywhere.
const latents = Float32Array.from({ length: count * 784 }, () => 1.8 * rng.uniform() - 0.9)
const condition = Int32Array.from({ length: count }, (_, i) => (3 * i) % 10)
const pixels = latents.map((v) => (v + 1) / 2)

describe("ONNX import", () => {
  it("reads the exported classifier back with the same outputs as the native session", async () => {
    const { bytes, session } = await classifierSession(net, params, 1)
    const g = new Graph("imported")
    const x = g.input("x", "float32", ["B", 784])
    g.output("logp", importOnnx(g, bytes, { x }, "classifier.onnx").logp)
    const imported = await EngineSession.create(g, { threads: 1 })
    const feeds = { x: { data: pixels, dims: [count, 784] } }
    const [a, b] = [(await session.run(feeds)).logp.data, (await imported.run(feeds)).logp.data] as Array<Float32Array>
    // The same ops on the same weights, so equal to float32 rounding of a differently fused graph.
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5)
  })

  it("gives the classifier reward's input gradient of the native graph, and of finite differences", async () => {
    const { bytes } = await classifierSession(net, params, 1)
    const imported = await classifierGradient(bytes, 784, 10, 1)
    const ctx: RewardContext = { dataset: "mnist", samples: latents, count, dim: 784, condition }
    const viaImport = await imported.gradient(ctx)
    // Native: the classifier built from its parameters as constants, differentiated with respect to pixels.
    const g = new Graph("native")
    const x = g.input("x", "float32", ["B", 784])
    const onehot = g.input("onehot", "float32", ["B", 10])
    const p = Object.fromEntries(classifierNet(net).specs.map((s) => [s.name, g.constant(params[s.name], s.shape)]))
    const r = op.reduceSum(op.mul(classifierNet(net).forward(p, x), onehot), [1])
    g.output("dx", grad(op.reduceSum(r, [0]), [x])[0]!)
    g.output("r", r)
    const native = await EngineSession.create(g, { threads: 1 })
    const hot = new Float32Array(count * 10)
    condition.forEach((c, i) => (hot[i * 10 + c] = 1))
    const run = async (px: Float32Array) =>
      native.run({ x: { data: px, dims: [count, 784] }, onehot: { data: hot, dims: [count, 10] } })
    const dPixels = (await run(pixels)).dx.data as Float32Array
    let scale = 0
    for (let i = 0; i < dPixels.length; i++) {
      expect(Math.abs(viaImport[i] - 0.5 * dPixels[i])).toBeLessThan(1e-6)
      scale = Math.max(scale, Math.abs(viaImport[i]))
    }
    expect(scale).toBeGreaterThan(1e-4)
    // Central differences in latent space on a few coordinates: float32 forwards, h = 1e-2, so 2 % or 1e-4.
    for (const k of [3, 400, 783 * 5 + 200]) {
      const shifted = (h: number) => Float32Array.from(latents, (v, i) => ((i === k ? v + h : v) + 1) / 2)
      const row = Math.floor(k / 784)
      const rPlus = ((await run(shifted(1e-2))).r.data as Float32Array)[row]
      const rMinus = ((await run(shifted(-1e-2))).r.data as Float32Array)[row]
      const fd = (rPlus - rMinus) / 2e-2
      expect(Math.abs(fd - viaImport[k])).toBeLessThan(Math.max(1e-4, 0.02 * Math.abs(fd)))
    }
    await imported.release()
  })

  it("refuses an op it cannot differentiate, naming the op and the node", () => {
    const g = new Graph("with-hardmax")
    const x = g.input("x", "float32", ["B", 4])
    g.output("y", g.node("Hardmax", [x], "float32", x.shape))
    const bytes = toOnnx(g)
    const into = new Graph("target")
    expect(() => importOnnx(into, bytes, { x: into.input("x", "float32", ["B", 4]) }, "hardmax.onnx")).toThrow(
      GraphError
    )
    expect(() => importOnnx(new Graph("t2"), bytes, {}, "hardmax.onnx")).toThrow(/input "x" is not bound/)
    const again = new Graph("t3")
    expect(() => importOnnx(again, bytes, { x: again.input("x", "float32", ["B", 4]) }, "hardmax.onnx")).toThrow(
      /hardmax\.onnx: node hardmax_0 \(Hardmax\): op Hardmax cannot be imported/
    )
  })
})

describe.each<[string, RewardModel, RewardGradient, string, number]>([
  ["ink", inkReward, inkGradient, "mnist", 784],
  ["outer-ring", outerRingReward, outerRingGradient, "double-ring", 2],
  ["quadratic", quadraticReward, quadraticGradient, "double-ring", 2],
  ["gmm-posterior", gmmPosteriorReward, gmmPosteriorGradient, "gmm25", 2]
])("the %s reward's gradient", (_, reward, gradient, dataset, dim) => {
  it("matches central finite differences of the reward itself", async () => {
    const s = openStream(["grad-test", dataset])
    const n = 4
    const x = Float32Array.from(
      { length: n * dim },
      () => (dataset === "mnist" ? 1.6 * s.uniform() - 0.8 : 3 * s.normal())
    )
    const ctx = (samples: Float32Array): RewardContext => ({
      dataset,
      samples,
      count: n,
      dim,
      condition: new Int32Array(n).fill(-1)
    })
    const g = await gradient.gradient(ctx(x))
    for (const k of [0, 1, dim + 1, n * dim - 1]) {
      const at = async (h: number) =>
        (await reward.score(ctx(x.map((v, i) => (i === k ? v + h : v)))))[Math.floor(k / dim)]
      // h = 1e-2 on float32 latents: the rewards are smooth there, so agreement to 1e-3 relative (or 1e-6).
      const fd = ((await at(1e-2)) - (await at(-1e-2))) / 2e-2
      expect(Math.abs(fd - g[k])).toBeLessThan(Math.max(1e-6, 1e-3 * Math.abs(fd)))
    }
  })
})
