/**
 * Graph ops (ONNX op types, opset 17) with shape and dtype inference. Binary ops broadcast like
 * NumPy; a number operand becomes a scalar constant of the other operand's type.
 */
import { type Dim, type DType, GraphError, type Shape, Tensor } from "./graph.ts"

type Operand = Tensor | number

const fail = (t: Tensor, msg: string): never => {
  throw new GraphError({ graph: t.graph.name, message: `${t.graph.name}: ${msg}` })
}

const lift = (a: Operand, like: Tensor): Tensor => (typeof a === "number" ? like.graph.scalar(a, like.dtype) : a)

/** NumPy broadcasting of two shapes; symbolic dims must match by name. */
export const broadcastShapes = (a: Shape, b: Shape, where: Tensor): Array<Dim> => {
  const n = Math.max(a.length, b.length)
  const out: Array<Dim> = []
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1
    const y = b[b.length - n + i] ?? 1
    if (x === y || y === 1) out.push(x)
    else if (x === 1) out.push(y)
    else fail(where, `cannot broadcast [${a}] with [${b}]`)
  }
  return out
}

const binary = (op: string) => (a: Operand, b: Operand): Tensor => {
  const ta = typeof a === "number" ? lift(a, b as Tensor) : a
  const tb = lift(b, ta)
  if (ta.dtype !== tb.dtype) fail(ta, `${op} of ${ta.dtype} and ${tb.dtype}`)
  return ta.graph.node(op, [ta, tb], ta.dtype, broadcastShapes(ta.shape, tb.shape, ta))
}

const unary = (op: string) => (a: Tensor): Tensor => a.graph.node(op, [a], a.dtype, a.shape)

export const add = binary("Add")
export const sub = binary("Sub")
export const mul = binary("Mul")
export const div = binary("Div")
export const max = binary("Max")
export const min = binary("Min")
export const neg = unary("Neg")
export const exp = unary("Exp")
export const log = unary("Log")
export const sqrt = unary("Sqrt")
export const sin = unary("Sin")
export const cos = unary("Cos")
export const sigmoid = unary("Sigmoid")
export const tanh = unary("Tanh")
export const erf = unary("Erf")

/** SiLU x·σ(x). */
export const silu = (x: Tensor) => mul(x, sigmoid(x))
/** GELU, tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))). */
export const gelu = (x: Tensor) =>
  mul(mul(x, 0.5), add(tanh(mul(add(x, mul(mul(mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI))), 1))
export const square = (x: Tensor) => mul(x, x)
/** |x| as max(x, −x) (one op fewer in the backward pass than ONNX Abs would need a rule for). */
export const abs = (x: Tensor) => max(x, neg(x))
/**
 * x with no gradient flowing through it (PyTorch's `detach()`, an ONNX Identity the backward pass
 * stops at): for weights a loss computes from the parameters but must treat as constants.
 */
export const stopGradient = unary("Identity")

const compare = (op: string) => (a: Operand, b: Operand): Tensor => {
  const ta = typeof a === "number" ? lift(a, b as Tensor) : a
  const tb = lift(b, ta)
  return ta.graph.node(op, [ta, tb], "bool", broadcastShapes(ta.shape, tb.shape, ta))
}
export const greaterOrEqual = compare("GreaterOrEqual")
export const lessOrEqual = compare("LessOrEqual")
export const less = compare("Less")
export const equal = compare("Equal")
export const and = (a: Tensor, b: Tensor) => a.graph.node("And", [a, b], "bool", broadcastShapes(a.shape, b.shape, a))

export const where = (cond: Tensor, x: Operand, y: Operand): Tensor => {
  const tx = typeof x === "number" ? lift(x, y as Tensor) : x
  const ty = lift(y, tx)
  return cond.graph.node(
    "Where",
    [cond, tx, ty],
    tx.dtype,
    broadcastShapes(cond.shape, broadcastShapes(tx.shape, ty.shape, tx), tx)
  )
}

export const cast = (x: Tensor, to: DType): Tensor => x.graph.node("Cast", [x], to, x.shape, { to })

/** Clamps x to [lo, hi]. */
export const clip = (x: Tensor, lo: number, hi: number): Tensor =>
  x.graph.node("Clip", [x, x.graph.scalar(lo, x.dtype), x.graph.scalar(hi, x.dtype)], x.dtype, x.shape)

/** Matrix product of [.., M, K] and [K, N] (or batched [.., K, N]). */
export const matmul = (a: Tensor, b: Tensor): Tensor => {
  if (a.rank < 2 || b.rank < 2) fail(a, `MatMul needs rank ≥ 2, got [${a.shape}] and [${b.shape}]`)
  const k1 = a.shape[a.rank - 1]
  const k2 = b.shape[b.rank - 2]
  if (k1 !== k2) fail(a, `MatMul inner dimensions differ: [${a.shape}] × [${b.shape}]`)
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), a)
  return a.graph.node("MatMul", [a, b], a.dtype, [...batch, a.shape[a.rank - 2], b.shape[b.rank - 1]])
}

/**
 * op(a) · op(b) for matrices, op = transpose where asked (ONNX Gemm): the backward pass's products
 * with a transposed factor, without materialising the transpose.
 */
export const gemm = (a: Tensor, b: Tensor, transA = false, transB = false): Tensor => {
  if (a.rank !== 2 || b.rank !== 2) fail(a, `Gemm needs matrices, got [${a.shape}] and [${b.shape}]`)
  const [m, k1] = transA ? [a.shape[1], a.shape[0]] : a.shape
  const [k2, n] = transB ? [b.shape[1], b.shape[0]] : b.shape
  if (k1 !== k2) {
    fail(a, `Gemm inner dimensions differ: [${a.shape}]${transA ? "ᵀ" : ""} × [${b.shape}]${transB ? "ᵀ" : ""}`)
  }
  return a.graph.node("Gemm", [a, b], a.dtype, [m, n], { transA: transA ? 1 : 0, transB: transB ? 1 : 0 })
}

const normAxis = (t: Tensor, axis: number) => (axis < 0 ? t.rank + axis : axis)

export const softmax = (x: Tensor, axis = -1) =>
  x.graph.node("Softmax", [x], x.dtype, x.shape, { axis: normAxis(x, axis) })
export const logSoftmax = (x: Tensor, axis = -1) =>
  x.graph.node("LogSoftmax", [x], x.dtype, x.shape, { axis: normAxis(x, axis) })

export const reduceSum = (x: Tensor, axes: ReadonlyArray<number>, keepdims = false): Tensor => {
  const ax = axes.map((a) => normAxis(x, a))
  const shape = keepdims ? x.shape.map((d, i) => (ax.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !ax.includes(i))
  return x.graph.node("ReduceSum", [x, x.graph.ints(ax)], x.dtype, shape, { keepdims: keepdims ? 1 : 0 })
}

/** Number of elements over `axes` as a scalar of x's type (computed at run time for symbolic dims). */
export const countOf = (x: Tensor, axes: ReadonlyArray<number>): Tensor => {
  const ax = axes.map((a) => normAxis(x, a))
  const dims = ax.map((a) => x.shape[a])
  if (dims.every((d) => typeof d === "number")) {
    return x.graph.scalar((dims as Array<number>).reduce((a, b) => a * b, 1), x.dtype)
  }
  const shape = x.graph.node("Shape", [x], "int64", [x.rank])
  const picked = x.graph.node("Gather", [shape, x.graph.ints(ax)], "int64", [ax.length], { axis: 0 })
  const prod = x.graph.node("ReduceProd", [picked], "int64", [], { keepdims: 0 })
  return cast(prod, x.dtype)
}

/** Mean over axes as ReduceSum ÷ n (ReduceMean changed its axes form at opset 18, docs/onnxruntime.md). */
export const reduceMean = (x: Tensor, axes: ReadonlyArray<number>, keepdims = false): Tensor =>
  div(reduceSum(x, axes, keepdims), countOf(x, axes))

/** (x − mean)/√(var + ε) over `axes`, the biased variance every normalisation layer uses. */
export const normalize = (x: Tensor, axes: ReadonlyArray<number>, epsilon: number): Tensor => {
  const centred = sub(x, reduceMean(x, axes, true))
  return div(centred, sqrt(add(reduceMean(mul(centred, centred), axes, true), epsilon)))
}

/** Reshape to a static shape (at most one -1) or to the run-time shape of another tensor. */
export const reshape = (x: Tensor, shape: ReadonlyArray<number> | Tensor, symbolic?: Shape): Tensor => {
  if (shape instanceof Tensor) {
    return x.graph.node("Reshape", [x, x.graph.node("Shape", [shape], "int64", [shape.rank])], x.dtype, shape.shape)
  }
  let inferred: Shape | undefined = symbolic
  if (inferred === undefined && x.shape.every((d) => typeof d === "number")) {
    const total = (x.shape as Array<number>).reduce((a, b) => a * b, 1)
    const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1)
    inferred = shape.map((d) => (d === -1 ? total / known : d))
  }
  return x.graph.node(
    "Reshape",
    [x, x.graph.ints(shape)],
    x.dtype,
    inferred ?? shape.map((d, i) => (d === -1 ? `reshape${x.id}_${i}` : d))
  )
}

export const transpose = (x: Tensor, perm?: ReadonlyArray<number>): Tensor => {
  const p = perm ?? x.shape.map((_, i) => x.rank - 1 - i)
  return x.graph.node("Transpose", [x], x.dtype, p.map((i) => x.shape[i]), { perm: p })
}

export const concat = (xs: ReadonlyArray<Tensor>, axis: number): Tensor => {
  const a = normAxis(xs[0], axis)
  const sizes = xs.map((x) => x.shape[a])
  const total = sizes.every((s) => typeof s === "number")
    ? (sizes as Array<number>).reduce((p, q) => p + q, 0)
    : `concat${xs[0].id}`
  return xs[0].graph.node("Concat", xs, xs[0].dtype, xs[0].shape.map((d, i) => (i === a ? total : d)), { axis: a })
}

/** x[..., start:end, ...] along one axis with a static size. */
export const slice = (x: Tensor, axis: number, start: number, end: number): Tensor => {
  const a = normAxis(x, axis)
  const g = x.graph
  return g.node(
    "Slice",
    [x, g.ints([start]), g.ints([end]), g.ints([a])],
    x.dtype,
    x.shape.map((d, i) => (i === a ? end - start : d))
  )
}

/** Rows of a table: data[indices] along axis 0 (indices int64). */
export const gather = (data: Tensor, indices: Tensor): Tensor =>
  data.graph.node("Gather", [data, indices], data.dtype, [...indices.shape, ...data.shape.slice(1)], { axis: 0 })

/** Broadcasts x to the run-time shape of `like`. */
export const expandAs = (x: Tensor, like: Tensor): Tensor =>
  x.graph.node("Expand", [x, x.graph.node("Shape", [like], "int64", [like.rank])], x.dtype, like.shape)

/** Zero-pads x along one axis (`before`, `after` elements). */
export const pad = (x: Tensor, axis: number, before: number, after: number): Tensor => {
  const a = normAxis(x, axis)
  const pads = [...x.shape.map((_, i) => (i === a ? before : 0)), ...x.shape.map((_, i) => (i === a ? after : 0))]
  const size = x.shape[a]
  return x.graph.node(
    "Pad",
    [x, x.graph.ints(pads)],
    x.dtype,
    x.shape.map((d, i) => (i === a ? (typeof size === "number" ? size + before + after : `pad${x.id}`) : d)),
    { mode: "constant" }
  )
}

/** Inserts size-1 axes at the given positions of the output. */
export const unsqueeze = (x: Tensor, axes: ReadonlyArray<number>): Tensor => {
  const rank = x.rank + axes.length
  const ax = axes.map((a) => (a < 0 ? rank + a : a))
  const shape: Array<Dim> = []
  let j = 0
  for (let i = 0; i < rank; i++) shape.push(ax.includes(i) ? 1 : x.shape[j++])
  return x.graph.node("Unsqueeze", [x, x.graph.ints(ax)], x.dtype, shape)
}
