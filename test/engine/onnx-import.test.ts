/**
 * The PyTorch fixtures (test/fixtures/models/make-fixtures.py: a tiny U-Net exported at opset 17 and
 * a tiny DiT at opset 13) imported into the engine: the forward pass against onnxruntime's run of the
 * original file, and every parameter's gradient against PyTorch's float64 central finite differences.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { grad } from "../../engine/autodiff.ts"
import { Graph } from "../../engine/graph.ts"
import { importOnnx, onnxWeights, unsupportedOp } from "../../engine/onnx-import.ts"
import * as op from "../../engine/ops.ts"
import { EngineSession } from "../../engine/session.ts"

const DIR = path.join(import.meta.dirname, "../fixtures/models")

interface Reference {
  readonly x: Array<number>
  readonly t: Array<number>
  readonly c: Array<number>
  readonly r: Array<number>
  readonly loss: number
  readonly params: Record<string, { indices: Array<number>; fd: Array<number>; scale: number }>
}

const fixture = (name: string) => ({
  bytes: new Uint8Array(fs.readFileSync(path.join(DIR, `${name}.onnx`))),
  ref: JSON.parse(fs.readFileSync(path.join(DIR, `${name}.ref.json`), "utf8")) as Reference,
  conditional: name === "tiny-dit"
})

/** The imported network with its weights as inputs, its output v and the gradients of Σ r ⊙ v. */
const importedGraph = (bytes: Uint8Array, conditional: boolean) => {
  const g = new Graph("imported")
  const weights = onnxWeights(bytes)
  const inputs = Object.fromEntries(weights.map((w) => [w.name, g.input(w.name, "float32", w.dims)]))
  const x = g.input("x", "float32", ["B", 1, 28, 28])
  const t = g.input("t", "float32", ["B"])
  const bound = conditional ? { x, t, c: g.input("c", "int64", ["B"]) } : { x, t }
  const { v } = importOnnx(g, bytes, bound, "fixture", { weights: inputs })
  const r = g.input("r", "float32", ["B", 1, 28, 28])
  const loss = op.reduceSum(op.mul(v, r), [0, 1, 2, 3])
  const grads = grad(loss, weights.map((w) => inputs[w.name]))
  g.output("v", v)
  g.output("loss", loss)
  weights.forEach((w, i) => g.output(`d.${w.name}`, grads[i] ?? op.mul(inputs[w.name], 0)))
  return { g, weights }
}

/** The imported graph run on the reference's inputs, with the file's weights. */
const runImported = async (bytes: Uint8Array, ref: Reference, conditional: boolean) => {
  const { g, weights } = importedGraph(bytes, conditional)
  const session = await EngineSession.create(g, { threads: 1 })
  const out = await session.run({
    ...feedsOf(ref, conditional),
    ...Object.fromEntries(weights.map((w) => [w.name, { data: w.data, dims: w.dims }])),
    r: { data: Float32Array.from(ref.r), dims: [2, 1, 28, 28] }
  })
  await session.release()
  return { out, weights }
}

const feedsOf = (ref: Reference, conditional: boolean) => ({
  x: { data: Float32Array.from(ref.x), dims: [2, 1, 28, 28] },
  t: { data: Float32Array.from(ref.t), dims: [2] },
  ...(conditional ? { c: { data: BigInt64Array.from(ref.c, BigInt), dims: [2] } } : {})
})

describe.each(["tiny-unet", "tiny-dit"])("the PyTorch fixture %s, imported", (name) => {
  it("computes onnxruntime's forward of the original file within 1e-5 (relative)", async () => {
    const { bytes, ref, conditional } = fixture(name)
    const original = await EngineSession.fromBytes(name, bytes, { threads: 1 })
    const want = (await original.run(feedsOf(ref, conditional))).v.data as Float32Array
    const { out } = await runImported(bytes, ref, conditional)
    const got = out.v.data as Float32Array
    const scale = Math.max(...Array.from(want, Math.abs))
    const worst = Math.max(...Array.from(got, (v, i) => Math.abs(v - want[i]) / scale))
    expect(worst).toBeLessThan(1e-5)
    // The float64 loss of PyTorch, to float32 accuracy: the fixture's reference matches the file.
    expect(Math.abs((out.loss.data[0] as number) - ref.loss) / Math.abs(ref.loss)).toBeLessThan(1e-4)
  })

  it("gives every parameter the gradient PyTorch's float64 finite differences give, within 1e-3", async () => {
    const { bytes, ref, conditional } = fixture(name)
    const { out, weights } = await runImported(bytes, ref, conditional)
    expect(weights.map((w) => w.name).sort()).toEqual(Object.keys(ref.params).sort())
    for (const w of weights) {
      const { indices, fd, scale } = ref.params[w.name]
      const analytic = out[`d.${w.name}`].data as Float32Array
      indices.forEach((i, k) => {
        // Relative to the tensor's largest gradient entry: float32 backward of a float64 reference.
        expect(Math.abs(analytic[i] - fd[k]) / scale, `${w.name}[${i}]: ${analytic[i]} vs ${fd[k]}`).toBeLessThan(1e-3)
      })
    }
  })
})

describe("ops outside the importable set", () => {
  it("are named with their node and where their result is used", () => {
    const bytes = new Uint8Array(fs.readFileSync(path.join(DIR, "tiny-unet.onnx")))
    expect(unsupportedOp(bytes, "tiny-unet.onnx")).toBeUndefined()
  })
})
