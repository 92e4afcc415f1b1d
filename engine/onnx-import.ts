/**
 * ONNX import: a ModelProto read back into the engine's graph IR, so a model exported elsewhere (or
 * by etaflow) becomes part of a larger graph and differentiable by autodiff.ts — reward gradients
 * ∇ₓ r(x) for adjoint matching. Only the ops this engine can differentiate are read; any other op
 * fails naming the op and the node.
 */
import onnxProto from "onnx-proto"
import { type ConstantData, type DType, type Graph, GraphError, type Tensor } from "./graph.ts"
import * as op from "./ops.ts"

const { onnx } = onnxProto

type Attrs = Readonly<Record<string, number | ReadonlyArray<number>>>

const DTYPES: Readonly<Record<number, DType>> = { 1: "float32", 7: "int64", 9: "bool", 11: "float64" }

const unary = (f: (x: Tensor) => Tensor) => (xs: ReadonlyArray<Tensor>) => f(xs[0])
const binary = (f: (a: Tensor, b: Tensor) => Tensor) => (xs: ReadonlyArray<Tensor>) => f(xs[0], xs[1])

/** Gemm: alpha·op(A)·op(B) + beta·C (ONNX's defaults alpha = beta = 1, C optional). */
const gemm = (xs: ReadonlyArray<Tensor>, attrs: Attrs) => {
  const [alpha, beta] = [Number(attrs.alpha ?? 1), Number(attrs.beta ?? 1)]
  let y = op.gemm(xs[0], xs[1], attrs.transA === 1, attrs.transB === 1)
  if (alpha !== 1) y = op.mul(y, alpha)
  return xs[2] === undefined ? y : op.add(y, beta === 1 ? xs[2] : op.mul(xs[2], beta))
}

/** The importable ops: ONNX op type → the engine op that has a gradient. */
const IMPORTERS: Readonly<
  Record<string, (xs: ReadonlyArray<Tensor>, attrs: Attrs, constant: (t: Tensor) => ConstantData) => Tensor>
> = {
  Add: binary(op.add),
  Sub: binary(op.sub),
  Mul: binary(op.mul),
  Div: binary(op.div),
  Max: binary(op.max),
  Min: binary(op.min),
  Neg: unary(op.neg),
  Exp: unary(op.exp),
  Log: unary(op.log),
  Sqrt: unary(op.sqrt),
  Sin: unary(op.sin),
  Cos: unary(op.cos),
  Sigmoid: unary(op.sigmoid),
  Tanh: unary(op.tanh),
  Relu: unary((x) => op.max(x, 0)),
  Identity: unary((x) => x),
  MatMul: binary(op.matmul),
  Gemm: gemm,
  Softmax: (xs, attrs) => op.softmax(xs[0], Number(attrs.axis ?? -1)),
  LogSoftmax: (xs, attrs) => op.logSoftmax(xs[0], Number(attrs.axis ?? -1)),
  Transpose: (xs, attrs) => op.transpose(xs[0], attrs.perm as ReadonlyArray<number> | undefined),
  Concat: (xs, attrs) => op.concat(xs, Number(attrs.axis)),
  Reshape: (xs, _, constant) => op.reshape(xs[0], Array.from(constant(xs[1]) as BigInt64Array, Number))
}

export const IMPORTABLE_OPS: ReadonlyArray<string> = Object.keys(IMPORTERS)

const attrsOf = (node: onnxProto.onnx.INodeProto): Attrs =>
  Object.fromEntries(
    (node.attribute ?? []).map((a) => [
      a.name ?? "",
      a.ints != null && a.ints.length > 0 ? a.ints.map(Number) : a.type === 1 ? Number(a.f) : Number(a.i)
    ])
  )

const constantData = (t: onnxProto.onnx.ITensorProto, dtype: DType): ConstantData => {
  const raw = t.rawData ?? new Uint8Array(0)
  // A copy: protobufjs hands out Node Buffers, whose slice() is a view into the whole file.
  const bytes = new Uint8Array(raw).buffer
  if (raw.length > 0) {
    if (dtype === "float32") return new Float32Array(bytes)
    if (dtype === "float64") return new Float64Array(bytes)
    if (dtype === "int64") return new BigInt64Array(bytes)
    return new Uint8Array(bytes)
  }
  if (dtype === "float32") return Float32Array.from(t.floatData ?? [])
  if (dtype === "float64") return Float64Array.from(t.doubleData ?? [])
  if (dtype === "int64") return BigInt64Array.from(t.int64Data ?? [], (v) => BigInt(v.toString()))
  return Uint8Array.from(t.int32Data ?? [])
}

/**
 * Reads the ONNX model `bytes` into `graph`, with its inputs bound to `inputs` (by name) and its
 * initializers as constants; returns its outputs by name. `source` names the model in errors.
 */
export const importOnnx = (
  graph: Graph,
  bytes: Uint8Array,
  inputs: Readonly<Record<string, Tensor>>,
  source: string
): Record<string, Tensor> => {
  const fail = (message: string): never => {
    throw new GraphError({ graph: graph.name, message: `${source}: ${message}` })
  }
  const model = onnx.ModelProto.decode(bytes)
  const g = model.graph ?? fail("the file holds no graph")
  const values = new Map<string, Tensor>()
  const constants = new Map<Tensor, ConstantData>()
  for (const init of g.initializer ?? []) {
    const dtype = DTYPES[init.dataType ?? 0] ?? fail(`initializer ${init.name} has an unsupported type`)
    const data = constantData(init, dtype)
    const t = graph.constant(data, (init.dims ?? []).map(Number), dtype)
    values.set(init.name ?? "", t)
    constants.set(t, data)
  }
  for (const input of g.input ?? []) {
    const name = input.name ?? ""
    if (values.has(name)) continue
    values.set(name, inputs[name] ?? fail(`input "${name}" is not bound (given: ${Object.keys(inputs).join(", ")})`))
  }
  const constant = (t: Tensor) => constants.get(t) ?? fail("a shape input must be a constant initializer")
  for (const [i, node] of (g.node ?? []).entries()) {
    const type = node.opType ?? ""
    const where = `node ${node.name || i} (${type})`
    if ((node.domain ?? "") !== "") fail(`${where}: op domain "${node.domain}" is not supported`)
    const importer = IMPORTERS[type] ??
      fail(`${where}: op ${type} cannot be imported (differentiable ops: ${IMPORTABLE_OPS.join(", ")})`)
    const args = (node.input ?? []).filter((n) => n !== "").map((n) =>
      values.get(n) ?? fail(`${where}: input "${n}" is not defined before it`)
    )
    values.set((node.output ?? [])[0] ?? "", importer(args, attrsOf(node), constant))
  }
  return Object.fromEntries(
    (g.output ?? []).map((
      o
    ) => [o.name ?? "", values.get(o.name ?? "") ?? fail(`output "${o.name}" is never computed`)])
  )
}
