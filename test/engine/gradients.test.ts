/**
 * Every backward rule against central finite differences, in float64 (relative error < 1e-6 of the
 * largest gradient entry). A random cotangent R makes the loss Σ R ⊙ op(x) exercise every output.
 */
import onnxProto from "onnx-proto"
import { describe, expect, it } from "vitest"
import { grad } from "../../engine/autodiff.ts"
import { Graph, type Tensor } from "../../engine/graph.ts"
import { toOnnx } from "../../engine/onnx.ts"
import * as op from "../../engine/ops.ts"
import { type Arg, checkGradient } from "../support/gradient-check.ts"

const { onnx } = onnxProto

const M = { shape: [3, 4] }
const P = { shape: [3, 4], positive: true }

describe("backward rules match finite differences", () => {
  it.each(
    [
      ["Add with broadcasting", [M, { shape: [4] }], ([a, b]: Array<Tensor>) => op.add(a, b)],
      ["Sub with broadcasting", [{ shape: [3, 1] }, M], ([a, b]: Array<Tensor>) => op.sub(a, b)],
      ["Mul with broadcasting", [M, { shape: [1, 4] }], ([a, b]: Array<Tensor>) => op.mul(a, b)],
      ["Div", [M, P], ([a, b]: Array<Tensor>) => op.div(a, b)],
      ["Neg", [M], ([a]: Array<Tensor>) => op.neg(a)],
      ["Exp", [M], ([a]: Array<Tensor>) => op.exp(a)],
      ["Log", [P], ([a]: Array<Tensor>) => op.log(a)],
      ["Sqrt", [P], ([a]: Array<Tensor>) => op.sqrt(a)],
      ["Sin", [M], ([a]: Array<Tensor>) => op.sin(a)],
      ["Cos", [M], ([a]: Array<Tensor>) => op.cos(a)],
      ["Sigmoid", [M], ([a]: Array<Tensor>) => op.sigmoid(a)],
      ["Tanh", [M], ([a]: Array<Tensor>) => op.tanh(a)],
      ["SiLU", [M], ([a]: Array<Tensor>) => op.silu(a)],
      ["GELU", [M], ([a]: Array<Tensor>) => op.gelu(a)],
      ["MatMul", [{ shape: [3, 4] }, { shape: [4, 2] }], ([a, b]: Array<Tensor>) => op.matmul(a, b)],
      ["Gemm", [{ shape: [3, 4] }, { shape: [4, 2] }], ([a, b]: Array<Tensor>) => op.gemm(a, b)],
      [
        "Gemm with A transposed",
        [{ shape: [4, 3] }, { shape: [4, 2] }],
        ([a, b]: Array<Tensor>) => op.gemm(a, b, true, false)
      ],
      [
        "Gemm with B transposed",
        [{ shape: [3, 4] }, { shape: [2, 4] }],
        ([a, b]: Array<Tensor>) => op.gemm(a, b, false, true)
      ],
      [
        "Gemm with both transposed",
        [{ shape: [4, 3] }, { shape: [2, 4] }],
        ([a, b]: Array<Tensor>) => op.gemm(a, b, true, true)
      ],
      [
        "batched MatMul with a shared right factor",
        [{ shape: [2, 3, 4] }, { shape: [4, 2] }],
        ([a, b]: Array<Tensor>) => op.matmul(a, b)
      ],
      ["Softmax", [M], ([a]: Array<Tensor>) => op.softmax(a, -1)],
      ["LogSoftmax", [M], ([a]: Array<Tensor>) => op.logSoftmax(a, 1)],
      ["ReduceSum keeping dims", [M], ([a]: Array<Tensor>) => op.reduceSum(a, [1], true)],
      [
        "ReduceSum over a symbolic batch",
        [{ shape: [3, 4], symbolic: ["B", 4] }],
        ([a]: Array<Tensor>) => op.reduceSum(a, [0])
      ],
      [
        "ReduceMean over a symbolic batch",
        [{ shape: [3, 4], symbolic: ["B", 4] }],
        ([a]: Array<Tensor>) => op.reduceMean(a, [0, 1])
      ],
      ["Reshape", [M], ([a]: Array<Tensor>) => op.reshape(a, [2, 6])],
      ["Transpose", [{ shape: [2, 3, 4] }], ([a]: Array<Tensor>) => op.transpose(a, [2, 0, 1])],
      ["Concat", [M, { shape: [3, 2] }], ([a, b]: Array<Tensor>) => op.concat([a, b], 1)],
      ["Slice", [M], ([a]: Array<Tensor>) => op.slice(a, 1, 1, 3)],
      ["Pad", [M], ([a]: Array<Tensor>) => op.pad(a, 0, 1, 2)],
      ["Unsqueeze", [M], ([a]: Array<Tensor>) => op.unsqueeze(a, [1])],
      ["Expand", [{ shape: [1, 4] }, M], ([a, b]: Array<Tensor>) => op.add(op.expandAs(a, b), op.mul(b, 0))],
      ["Clip", [M], ([a]: Array<Tensor>) => op.clip(a, -0.5, 0.5)],
      ["Max", [M, M], ([a, b]: Array<Tensor>) => op.max(a, b)],
      ["Min", [M, { shape: [4] }], ([a, b]: Array<Tensor>) => op.min(a, b)],
      ["Where", [M, M], ([a, b]: Array<Tensor>) => op.where(op.greaterOrEqual(a, 0), a, op.mul(b, 2))]
    ] as const
  )("%s", async (name, args, f) => {
    await checkGradient(name, args as ReadonlyArray<Arg>, f as (xs: Array<Tensor>) => Tensor)
  })

  it("Gather (an embedding lookup) sends gradients to the rows it read, summing repeats", async () => {
    await checkGradient(
      "Gather",
      [{ shape: [5, 3] }],
      ([table], g) => op.gather(table, g.constant(BigInt64Array.of(1n, 4n, 1n, 0n), [4], "int64"))
    )
  })

  it("a composite loss (MLP, log-softmax cross-entropy) matches as a whole", async () => {
    await checkGradient(
      "mlp",
      [{ shape: [4, 3] }, { shape: [3, 5] }, { shape: [5] }, { shape: [5, 2] }],
      ([x, w1, b1, w2]) => {
        const h = op.silu(op.add(op.matmul(x, w1), b1))
        return op.reduceSum(op.logSoftmax(op.matmul(h, w2)), [1])
      }
    )
  })
})

describe("ONNX emission", () => {
  it("emits only the nodes the outputs need (no input gradient of a weight-only training step)", () => {
    const g = new Graph("weights-only")
    const x = g.input("x", "float32", ["B", 8])
    const w1 = g.input("w1", "float32", [8, 8])
    const w2 = g.input("w2", "float32", [8, 2])
    const loss = op.reduceSum(op.matmul(op.tanh(op.matmul(x, w1)), w2), [0, 1])
    const [g1, g2] = grad(loss, [w1, w2])
    g.output("loss", loss)
    g.output("g1", g1!)
    g.output("g2", g2!)
    const built = g.nodes.filter((n) => n.op === "MatMul" || n.op === "Gemm").length
    const model = onnx.ModelProto.decode(toOnnx(g))
    const emitted = model.graph!.node!.filter((n) => n.opType === "MatMul" || n.opType === "Gemm").length
    // Forward 2, dW2 1, dh 1, dW1 1; autodiff also built dx (nobody reads it), which is dropped.
    expect(built).toBe(6)
    expect(emitted).toBe(5)
  })
})
