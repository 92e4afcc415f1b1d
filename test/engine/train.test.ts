import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { Graph } from "../../engine/graph.ts"
import { toOnnx } from "../../engine/onnx.ts"
import * as op from "../../engine/ops.ts"
import { initParams, paramInputs, type ParamSpec, type ParamValues } from "../../engine/params.ts"
import { readSafetensors, writeSafetensors } from "../../engine/safetensors.ts"
import { EngineSession } from "../../engine/session.ts"
import { type LossBuilder } from "../../engine/train-step.ts"
import { Trainer, type TrainState } from "../../engine/train.ts"
import { loadOnnxModel } from "../../models/external.ts"
import { velocityGraph } from "../../models/network-policy.ts"
import { velocityNet } from "../../models/velocity-net.ts"
import { openStream } from "../../random/streams.ts"

const specs: Array<ParamSpec> = [
  { name: "w", shape: [3, 2], init: { std: 0.5 } },
  { name: "b", shape: [2], init: "zeros" }
]
const regression: LossBuilder = (g, p) => {
  const x = g.input("x", "float32", ["B", 3])
  const y = g.input("y", "float32", ["B", 2])
  return { loss: op.reduceMean(op.square(op.sub(op.add(op.matmul(x, p.w), p.b), y)), [0, 1]) }
}
const batch = (key: string, n = 32) => {
  const rng = openStream(["train-test", key])
  const x = rng.fillNormal(new Float32Array(n * 3))
  // y = x · W* + b* with W* = [[1, −1], [2, 0], [0, 3]], b* = [0.5, −0.5]
  const y = Float32Array.from({ length: n * 2 }, (_, k) => {
    const [r, c] = [Math.floor(k / 2), k % 2]
    const W = [[1, -1], [2, 0], [0, 3]]
    return x[r * 3] * W[0][c] + x[r * 3 + 1] * W[1][c] + x[r * 3 + 2] * W[2][c] + (c === 0 ? 0.5 : -0.5)
  })
  return { x: { data: x, dims: [n, 3] }, y: { data: y, dims: [n, 2] } }
}

describe("train steps", () => {
  it("take the AdamW step PyTorch takes, computed here by hand for the first step", async () => {
    const init = initParams(specs, openStream(["init"]))
    const adam = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: Infinity }
    const js = await Trainer.create({
      name: "r",
      specs,
      loss: regression,
      adam,
      update: "js",
      threads: 1,
      init: {
        params: structuredClone(init),
        m: { w: new Float32Array(6), b: new Float32Array(2) },
        v: { w: new Float32Array(6), b: new Float32Array(2) },
        step: 0
      }
    })
    // Gradient of the loss at the initial weights, from a gradient-only graph run.
    const g = new Graph("grad")
    const p = paramInputs(g, specs)
    const { loss } = regression(g, p)
    const { grad } = await import("../../engine/autodiff.ts")
    grad(loss, [p.w, p.b]).forEach((gr, i) => g.output(`g${i}`, gr!))
    const s = await EngineSession.create(g, { threads: 1 })
    const b0 = batch("one")
    const out = await s.run({ w: { data: init.w, dims: [3, 2] }, b: { data: init.b, dims: [2] }, ...b0 })
    await js.step(b0)
    // Step 1: m̂ = g, v̂ = g², so p ← p − lr·wd·p − lr · g / (|g| + ε).
    const gw = out.g0.data as Float32Array
    for (let i = 0; i < 6; i++) {
      const expected = init.w[i] - 0.1 * 0.01 * init.w[i] - (0.1 * gw[i]) / (Math.abs(gw[i]) + 1e-8)
      expect(js.state.params.w[i]).toBeCloseTo(expected, 5)
    }
  })

  it("give the same weights whether AdamW runs in the graph or in JS", async () => {
    const init = initParams(specs, openStream(["init"]))
    const make = (update: "graph" | "js") =>
      Trainer.create({
        name: "r",
        specs,
        loss: regression,
        update,
        threads: 1,
        init: Object.fromEntries(Object.entries(init).map(([k, v]) => [k, v.slice()]))
      })
    const [a, b] = [await make("graph"), await make("js")]
    for (let i = 0; i < 20; i++) {
      const bt = batch(`b${i}`)
      await a.step(bt)
      await b.step(bt)
    }
    // Both are float32 AdamW in a different operation order (the graph folds the clip into scalars):
    // after 20 steps they agree to a few float32 ulps of the weights' scale, not just 4 decimals.
    const scale = Math.max(...Object.values(b.state.params).flatMap((v) => Array.from(v, Math.abs)))
    for (const k of ["w", "b"]) {
      for (let i = 0; i < init[k].length; i++) {
        expect(Math.abs(a.state.params[k][i] - b.state.params[k][i])).toBeLessThan(8 * 2 ** -23 * scale)
      }
    }
  })

  it("fit a linear regression with a known optimum", async () => {
    const tr = await Trainer.create({
      name: "r",
      specs,
      loss: regression,
      adam: { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 10 },
      threads: 1,
      init: initParams(specs, openStream(["init"]))
    })
    let last = Infinity
    for (let i = 0; i < 400; i++) last = (await tr.step(batch(`fit${i}`))).loss
    expect(last).toBeLessThan(1e-4)
    // + 0 turns a rounded −0 into 0.
    expect(Array.from(tr.state.params.w, (v) => Math.round(v * 100) / 100 + 0)).toEqual([1, -1, 2, 0, 0, 3])
  })

  it("are bit-reproducible: the same inputs give the same weights and losses, step after step", async () => {
    const run = async () => {
      const tr = await Trainer.create({
        name: "r",
        specs,
        loss: regression,
        threads: 2,
        init: initParams(specs, openStream(["init"]))
      })
      const losses: Array<number> = []
      for (let i = 0; i < 10; i++) losses.push((await tr.step(batch(`det${i}`, 512))).loss)
      return { losses, w: Buffer.from(tr.state.params.w.buffer).toString("hex") }
    }
    expect(await run()).toEqual(await run())
  })

  it("never write into the weights they start from, and keep a state until the next-but-one step", async () => {
    // Steps write into two buffer sets of their own: the initial weights (a base model's, shared with
    // the KL reference and the evaluation) must come out untouched.
    const init = initParams(specs, openStream(["init"]))
    const pristine = Object.fromEntries(Object.entries(init).map(([k, v]) => [k, Array.from(v)]))
    const tr = await Trainer.create({ name: "r", specs, loss: regression, threads: 1, init })
    await tr.step(batch("own0"))
    const afterOne = tr.state.params.w
    const kept = Array.from(afterOne)
    await tr.step(batch("own1"))
    expect(Array.from(afterOne)).toEqual(kept)
    for (let i = 2; i < 6; i++) await tr.step(batch(`own${i}`))
    for (const [k, v] of Object.entries(init)) expect(Array.from(v)).toEqual(pristine[k])
    expect(tr.state.params.w).not.toBe(init.w)
  })

  /** A spec layout of the test's own, so no other test's trainer shares its pool entry. */
  const ownLayout = (prefix: string) => {
    const own: Array<ParamSpec> = specs.map((s) => ({ ...s, name: `${prefix}.${s.name}` }))
    const loss: LossBuilder = (g, p) => regression(g, { w: p[`${prefix}.w`], b: p[`${prefix}.b`] })
    /** A one-thread trainer of the layout from `init` (a stream key's fresh weights, or a state). */
    const trainer = (name: string, init: string | ParamValues | TrainState, donate = false) =>
      Trainer.create({
        name,
        specs: own,
        loss,
        threads: 1,
        init: typeof init === "string" ? initParams(own, openStream([init])) : init,
        donate
      })
    return { own, trainer }
  }

  it("reuse a released trainer's spare buffers for the next trainer, never the state it returned", async () => {
    const { trainer } = ownLayout("pool")
    const a = await trainer("a", "a")
    await a.step(batch("pool0"))
    const beforeLast = a.state.params["pool.w"]
    await a.step(batch("pool1"))
    const returned = a.state
    const kept = Array.from(returned.params["pool.w"])
    await a.release()
    const b = await trainer("b", returned)
    await b.step(batch("pool2"))
    // The step before a's last is what b writes into; a's last state (b's start) is untouched.
    expect(b.state.params["pool.w"]).toBe(beforeLast)
    await b.step(batch("pool3"))
    expect(Array.from(returned.params["pool.w"])).toEqual(kept)
    // The same two steps from a fresh trainer give the same weights: buffers change no bits.
    const c = await trainer("c", returned)
    await c.step(batch("pool2"))
    await c.step(batch("pool3"))
    expect(Array.from(c.state.params["pool.w"])).toEqual(Array.from(b.state.params["pool.w"]))
  })

  it("write into a donated initial state once a step has replaced it, and pass it on at release", async () => {
    const { own, trainer } = ownLayout("donate")
    const given = initParams(own, openStream(["donated"]))
    const kept = Array.from(given["donate.w"])
    const a = await trainer("a", given, true)
    await a.step(batch("donate0"))
    // The first step reads the donated state, so it writes elsewhere; the second may overwrite it.
    expect(Array.from(given["donate.w"])).toEqual(kept)
    await a.step(batch("donate1"))
    expect(a.state.params["donate.w"]).toBe(given["donate.w"])
    // Donation changes where results land, never their bits.
    const b = await trainer("b", "donated")
    await b.step(batch("donate0"))
    await b.step(batch("donate1"))
    expect(Array.from(a.state.params["donate.w"])).toEqual(Array.from(b.state.params["donate.w"]))
    await b.release()
    // One step, then release: the donated state is the spare the next trainer of the layout writes into.
    const once = initParams(own, openStream(["once"]))
    const c = await trainer("c", once, true)
    await c.step(batch("donate2"))
    const returned = c.state
    await c.release()
    const d = await trainer("d", returned, true)
    await d.step(batch("donate3"))
    expect(d.state.params["donate.w"]).toBe(once["donate.w"])
    await d.release()
  })

  it("refuse a non-finite loss and keep the previous weights", async () => {
    const tr = await Trainer.create({
      name: "r",
      specs,
      loss: regression,
      threads: 1,
      init: initParams(specs, openStream(["init"]))
    })
    const before = tr.state.params.w.slice()
    const bad = batch("nan")
    ;(bad.x.data as Float32Array)[0] = Number.NaN
    await expect(tr.step(bad)).rejects.toThrow(/step 1: loss NaN.*not updated/)
    expect(Array.from(tr.state.params.w)).toEqual(Array.from(before))
  })
})

describe("models as files", () => {
  const net = { dim: 4, hidden: 8, blocks: 1, timeFeatures: 4, classes: 3 }
  const params = initParams(velocityNet(net).specs.map((s) => ({ ...s, init: { std: 0.3 } })), openStream(["export"]))
  const feeds = {
    x: { data: Float32Array.from([0.1, 0.2, -0.3, 0.4, 1, 0, -1, 0.5]), dims: [2, 4] },
    t: { data: Float32Array.from([0.3, 0.9]), dims: [2] },
    c: { data: BigInt64Array.from([0n, 3n]), dims: [2] }
  }

  it("export with weights baked in and compute what the weights-as-inputs graph computes", async () => {
    const g = velocityGraph(net)
    const asInputs = await EngineSession.create(g, { threads: 1 })
    const weightFeeds = Object.fromEntries(
      velocityNet(net).specs.map((s) => [s.name, { data: params[s.name], dims: s.shape }])
    )
    const a = (await asInputs.run({ ...weightFeeds, ...feeds })).f.data as Float32Array
    const baked = await EngineSession.fromBytes("baked", toOnnx(velocityGraph(net), { initializers: params }), {
      threads: 1
    })
    const b = (await baked.run(feeds)).f.data as Float32Array
    expect(Array.from(b)).toEqual(Array.from(a))
  })

  it("round-trip weights through safetensors bit-exactly, and name the file when it is cut short", () => {
    const specsV = velocityNet(net).specs
    const bytes = writeSafetensors(
      Object.fromEntries(specsV.map((s) => [s.name, { data: params[s.name], shape: s.shape }])),
      { kind: "test" }
    )
    const back = readSafetensors(bytes, "w.safetensors")
    expect(back.metadata.kind).toBe("test")
    for (const s of specsV) expect(Array.from(back.tensors[s.name].data)).toEqual(Array.from(params[s.name]))
    expect(() => readSafetensors(bytes.subarray(0, bytes.length - 4), "cut.safetensors")).toThrow(
      /cut\.safetensors: tensor .* past the end/
    )
  })

  it("load an external ONNX model against its contract, and name the input and shape that do not fit", async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-onnx-")), "policy.onnx")
    fs.writeFileSync(file, toOnnx(velocityGraph(net), { initializers: params }))
    const ok = {
      inputs: { x: { dtype: "float32", shape: ["batch", 4] }, t: { dtype: "float32", shape: ["batch"] } },
      outputs: { f: { dtype: "float32", shape: ["batch", 4] } }
    } as const
    await expect(loadOnnxModel(file, ok, 1)).resolves.toBeDefined()
    await expect(loadOnnxModel(file, { ...ok, inputs: { x: { dtype: "float32", shape: ["batch", 784] } } }, 1))
      .rejects.toThrow(new RegExp(`model .*policy\\.onnx: input "x" has shape \\[B, 4\\], expected \\[batch, 784\\]`))
    await expect(loadOnnxModel(file, { ...ok, inputs: { image: { dtype: "float32", shape: ["batch", 4] } } }, 1))
      .rejects.toThrow(/has no input "image" \(its inputs: x, t, c\)/)
  })
})
