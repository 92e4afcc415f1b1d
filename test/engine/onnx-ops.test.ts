/**
 * Importable ops the PyTorch fixtures do not use (LayerNormalization, GroupNormalization, Split, Flatten,
 * Squeeze, Expand, a run-time Where, Resize by scales): each in a one-op model, its import against
 * onnxruntime's run of the file (float32, within 1e-6 of the output scale), and the import of the same
 * model in float64 against finite differences (the lowered ops all run in float64).
 */
import onnxProto from "onnx-proto"
import { describe, expect, it } from "vitest"
import { type DType, Graph, type Tensor } from "../../engine/graph.ts"
import { importOnnx } from "../../engine/onnx-import.ts"
import { toOnnx } from "../../engine/onnx.ts"
import * as op from "../../engine/ops.ts"
import { EngineSession } from "../../engine/session.ts"
import { openStream } from "../../random/streams.ts"
import { checkGradient } from "../support/gradient-check.ts"

const SHAPE = [2, 4, 3, 3]

/** The model's bytes; a Split gets its second output (the engine's IR has single-output nodes). */
const emit = (g: Graph): Uint8Array => {
  const model = onnxProto.onnx.ModelProto.decode(toOnnx(g))
  for (const node of model.graph?.node ?? []) {
    if (node.opType === "Split") node.output = [...(node.output ?? []), "rest"]
  }
  // GroupNormalization exists from opset 18 (the emitter writes 17).
  if (model.graph?.node?.some((n) => n.opType === "GroupNormalization")) {
    model.opsetImport = [{ domain: "", version: 18 }]
  }
  return onnxProto.onnx.ModelProto.encode(model).finish()
}

const constant = (g: Graph, dtype: DType, values: ReadonlyArray<number>, shape: ReadonlyArray<number>) =>
  g.constant(dtype === "float64" ? Float64Array.from(values) : Float32Array.from(values), shape, dtype)

const CASES: ReadonlyArray<readonly [string, (g: Graph, x: Tensor, dtype: DType) => Tensor]> = [
  [
    "LayerNormalization over the last two axes",
    (g, x, dt) =>
      g.node(
        "LayerNormalization",
        [
          x,
          constant(g, dt, [1.5, 0.5, 1, 2, 1, 0.5, 1, 1, 3], [3, 3]),
          constant(g, dt, [0.1, 0, 0, 0, 0.2, 0, 0, 0, -0.1], [3, 3])
        ],
        dt,
        x.shape,
        { axis: -2, epsilon: 1e-5 }
      )
  ],
  [
    "GroupNormalization in 2 groups (opset 18: scale and bias per group)",
    (g, x, dt) =>
      g.node(
        "GroupNormalization",
        [x, constant(g, dt, [1.5, 0.5], [2]), constant(g, dt, [0.1, -0.2], [2])],
        dt,
        x.shape,
        { num_groups: 2, epsilon: 1e-5 }
      )
  ],
  [
    "Split into unequal parts (the first part)",
    (g, x) => op.mul(g.node("Split", [x, g.ints([1, 3])], x.dtype, [2, 1, 3, 3], { axis: 1 }), 2)
  ],
  ["Flatten at axis 2", (g, x) => g.node("Flatten", [x], x.dtype, [8, 9], { axis: 2 })],
  ["Squeeze of a size-1 axis", (g, x) => g.node("Squeeze", [op.slice(x, 2, 1, 2), g.ints([2])], x.dtype, [2, 4, 3])],
  [
    "Expand to a larger shape",
    (g, x) => g.node("Expand", [op.slice(x, 0, 0, 1), g.ints([3, 4, 3, 3])], x.dtype, [3, 4, 3, 3])
  ],
  ["Where on a run-time condition", (_, x) => op.where(op.greaterOrEqual(x, 0), op.mul(x, 3), op.neg(x))],
  [
    "Resize ×2 nearest by scales (asymmetric)",
    (g, x, dt) =>
      g.node("Resize", [x, constant(g, dt, [], [0]), g.constant(Float32Array.of(1, 1, 2, 2), [4])], dt, [2, 4, 6, 6], {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor"
      })
  ]
]

describe("one-op models, imported", () => {
  it.each(CASES)("%s: the import computes onnxruntime's output", async (_, make) => {
    const source = new Graph("source")
    source.output("y", make(source, source.input("x", "float32", SHAPE), "float32"))
    const bytes = emit(source)
    const rng = openStream(["one-op"])
    const x = Float32Array.from({ length: 72 }, () => rng.normal())
    const original = await EngineSession.fromBytes("original", bytes, { threads: 1 })
    const want = (await original.run({ x: { data: x, dims: SHAPE } })).y.data as Float32Array
    const g = new Graph("imported")
    g.output("y", importOnnx(g, bytes, { x: g.input("x", "float32", SHAPE) }, "one-op.onnx").y)
    const got = (await (await EngineSession.create(g, { threads: 1 })).run({ x: { data: x, dims: SHAPE } })).y.data
    const scale = Math.max(...Array.from(want, Math.abs))
    expect(Array.from(got as Float32Array, (v, i) => Math.abs(v - want[i]) / scale).every((e) => e < 1e-6)).toBe(true)
  })

  it.each(CASES)("%s: its import's gradient matches finite differences", async (name, make) => {
    const source = new Graph("source64")
    source.output("y", make(source, source.input("x", "float64", SHAPE), "float64"))
    const bytes = emit(source)
    await checkGradient(name, [{ shape: SHAPE }], ([x], g) => importOnnx(g, bytes, { x }, "one-op.onnx").y)
  })
})
