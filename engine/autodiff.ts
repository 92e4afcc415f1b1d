/**
 * Reverse-mode autodiff over the graph IR. `grad` appends the backward pass to the same graph, so
 * forward, loss, gradients and the optimizer update run as one ONNX model. Each rule below is the
 * textbook vector–Jacobian product of its op (checked against finite differences in
 * test/engine/gradients.test.ts); broadcasting is undone by summing over the broadcast axes.
 */
import { CONV_RULES } from "./conv.ts"
import { GraphError, type OpNode, Tensor } from "./graph.ts"
import * as op from "./ops.ts"

type Rule = (node: OpNode, g: Tensor) => ReadonlyArray<Tensor | undefined>

/** Sums g over the axes along which `target` was broadcast, and gives it target's shape. */
export const unbroadcast = (g: Tensor, target: Tensor): Tensor => {
  const lead = g.rank - target.rank
  const axes: Array<number> = []
  for (let i = 0; i < g.rank; i++) {
    if (i < lead) axes.push(i)
    else if (target.shape[i - lead] === 1 && g.shape[i] !== 1) axes.push(i)
  }
  if (axes.length === 0) return g
  const summed = op.reduceSum(g, axes, true)
  const staticShape = target.shape.every((d) => typeof d === "number")
  return staticShape ? op.reshape(summed, target.shape as Array<number>) : op.reshape(summed, target)
}

const swapLast = (t: Tensor) =>
  op.transpose(t, [...t.shape.keys()].map((i) => (i < t.rank - 2 ? i : i === t.rank - 2 ? t.rank - 1 : t.rank - 2)))
const staticSize = (t: Tensor, axis: number, what: string): number => {
  const d = t.shape[axis]
  if (typeof d !== "number") {
    throw new GraphError({
      graph: t.graph.name,
      message: `${t.graph.name}: the gradient of ${what} needs a static size on axis ${axis}, got "${d}"`
    })
  }
  return d
}

/**
 * d(a·W) / dW for a matrix W shared by every leading index of a [.., K]: one GEMM of a and g flattened to rows
 * (a batched product per leading index followed by a sum wrote [.., K, N] first: the DiT's linear layers).
 */
const sharedWeightGradient = (a: Tensor, g: Tensor): Tensor => {
  if (a.rank === 2) return op.gemm(a, g, true, false)
  const lead = a.shape.slice(0, -1)
  const rows = lead.every((d) => typeof d === "number")
    ? lead.reduce<number>((n, d) => n * (d as number), 1)
    : lead.join("·")
  const [K, N] = [staticSize(a, a.rank - 1, "MatMul"), staticSize(g, g.rank - 1, "MatMul")]
  return op.gemm(op.reshape(a, [-1, K], [rows, K]), op.reshape(g, [-1, N], [rows, N]), true, false)
}

const RULES: Record<string, Rule> = {
  ...CONV_RULES,
  Add: ({ inputs: [a, b] }, g) => [unbroadcast(g, a), unbroadcast(g, b)],
  Sub: ({ inputs: [a, b] }, g) => [unbroadcast(g, a), unbroadcast(op.neg(g), b)],
  Mul: ({ inputs: [a, b] }, g) => [unbroadcast(op.mul(g, b), a), unbroadcast(op.mul(g, a), b)],
  Div: (
    { inputs: [a, b], output },
    g
  ) => [unbroadcast(op.div(g, b), a), unbroadcast(op.neg(op.div(op.mul(g, output), b)), b)],
  Neg: (_, g) => [op.neg(g)],
  // stopGradient: nothing flows back.
  Identity: () => [undefined],
  Exp: ({ output }, g) => [op.mul(g, output)],
  Log: ({ inputs: [a] }, g) => [op.div(g, a)],
  Sqrt: ({ output }, g) => [op.div(op.mul(g, 0.5), output)],
  Sin: ({ inputs: [a] }, g) => [op.mul(g, op.cos(a))],
  Cos: ({ inputs: [a] }, g) => [op.neg(op.mul(g, op.sin(a)))],
  Sigmoid: ({ output }, g) => [op.mul(g, op.mul(output, op.sub(1, output)))],
  Tanh: ({ output }, g) => [op.mul(g, op.sub(1, op.mul(output, output)))],
  Erf: ({ inputs: [a] }, g) => [op.mul(g, op.mul(op.exp(op.neg(op.mul(a, a))), 2 / Math.sqrt(Math.PI)))],
  MatMul: ({ inputs: [a, b] }, g) =>
    b.rank === 2
      ? [a.rank === 2 ? op.gemm(g, b, false, true) : op.matmul(g, swapLast(b)), sharedWeightGradient(a, g)]
      : [unbroadcast(op.matmul(g, swapLast(b)), a), unbroadcast(op.matmul(swapLast(a), g), b)],
  Gemm: ({ inputs: [a, b], attrs }, g) => {
    const ta = attrs.transA === 1
    const tb = attrs.transB === 1
    // Y = op(A)·op(B): dop(A) = g·op(B)ᵀ, dop(B) = op(A)ᵀ·g, transposed back where A or B was.
    const da = ta ? op.gemm(b, g, tb, true) : op.gemm(g, b, false, !tb)
    const db = tb ? op.gemm(g, a, true, ta) : op.gemm(a, g, !ta, false)
    return [da, db]
  },
  Softmax: (
    { output, attrs },
    g
  ) => [op.mul(output, op.sub(g, op.reduceSum(op.mul(g, output), [attrs.axis as number], true)))],
  LogSoftmax: (
    { output, attrs },
    g
  ) => [op.sub(g, op.mul(op.exp(output), op.reduceSum(g, [attrs.axis as number], true)))],
  ReduceSum: ({ inputs: [a, axesT], attrs }, g) => {
    const axes = a.graph.constants.find((c) => c.tensor === axesT)!.data as BigInt64Array
    const kept = attrs.keepdims === 1 ? g : op.unsqueeze(g, Array.from(axes, Number))
    return [op.expandAs(kept, a)]
  },
  Reshape: (
    { inputs: [a] },
    g
  ) => [a.shape.every((d) => typeof d === "number") ? op.reshape(g, a.shape as Array<number>) : op.reshape(g, a)],
  Transpose: ({ attrs }, g) => {
    const perm = attrs.perm as ReadonlyArray<number>
    const inverse = perm.map((_, i) => perm.indexOf(i))
    return [op.transpose(g, inverse)]
  },
  Concat: ({ inputs, attrs }, g) => {
    const axis = attrs.axis as number
    let start = 0
    return inputs.map((x) => {
      const size = staticSize(x, axis, "Concat")
      const piece = op.slice(g, axis, start, start + size)
      start += size
      return piece
    })
  },
  Slice: ({ inputs: [a, startT, endT, axesT] }, g) => {
    const value = (t: Tensor) => Number((a.graph.constants.find((c) => c.tensor === t)!.data as BigInt64Array)[0])
    const axis = value(axesT)
    const size = staticSize(a, axis, "Slice")
    return [op.pad(g, axis, value(startT), size - value(endT))]
  },
  Pad: ({ inputs: [a, padsT] }, g) => {
    const pads = Array.from(a.graph.constants.find((c) => c.tensor === padsT)!.data as BigInt64Array, Number)
    const axis = pads.findIndex((p, i) => i < a.rank && (p !== 0 || pads[i + a.rank] !== 0))
    if (axis < 0) return [g]
    return [op.slice(g, axis, pads[axis], pads[axis] + staticSize(a, axis, "Pad"))]
  },
  Gather: ({ inputs: [data, indices] }, g) => {
    // d data[v] = Σ over positions holding index v of g: a one-hot matrix product.
    const V = staticSize(data, 0, "Gather")
    const range = data.graph.constant(BigInt64Array.from({ length: V }, (_, i) => BigInt(i)), [V], "int64")
    const oneHot = op.cast(op.equal(op.unsqueeze(indices, [-1]), range), data.dtype)
    const rest = data.shape.slice(1).map((d) => d as number)
    const width = rest.reduce((p, q) => p * q, 1)
    const rows = `rows${indices.id}`
    const flat = op.matmul(
      op.transpose(op.reshape(oneHot, [-1, V], [rows, V])),
      op.reshape(g, [-1, width], [rows, width])
    )
    return [op.reshape(flat, [V, ...rest]), undefined]
  },
  Where: (
    { inputs: [c, x, y] },
    g
  ) => [undefined, unbroadcast(op.where(c, g, 0), x), unbroadcast(op.where(c, 0, g), y)],
  Clip: (
    { inputs: [x, lo, hi] },
    g
  ) => [op.where(op.and(op.greaterOrEqual(x, lo), op.lessOrEqual(x, hi)), g, 0), undefined, undefined],
  Max: ({ inputs: [a, b] }, g) => {
    const m = op.greaterOrEqual(a, b)
    return [unbroadcast(op.where(m, g, 0), a), unbroadcast(op.where(m, 0, g), b)]
  },
  Min: ({ inputs: [a, b] }, g) => {
    const m = op.lessOrEqual(a, b)
    return [unbroadcast(op.where(m, g, 0), a), unbroadcast(op.where(m, 0, g), b)]
  },
  Cast: ({ inputs: [a] }, g) => [a.dtype === "float32" || a.dtype === "float64" ? op.cast(g, a.dtype) : undefined],
  Expand: ({ inputs: [a] }, g) => [unbroadcast(g, a), undefined],
  Unsqueeze: (
    { inputs: [a] },
    g
  ) => [
    a.shape.every((d) => typeof d === "number") ? op.reshape(g, a.shape as Array<number>) : op.reshape(g, a),
    undefined
  ]
}

const isFloat = (t: Tensor) => t.dtype === "float32" || t.dtype === "float64"

/**
 * Gradients of `output` with respect to each tensor of `wrt` (undefined where there is no path).
 * `output` must be a scalar unless `seed` (the cotangent, same shape as output) is given: with a
 * seed this is the vector–Jacobian product seedᵀ ∂output/∂wrt (adjoint matching needs it w.r.t. x).
 */
export const grad = (output: Tensor, wrt: ReadonlyArray<Tensor>, seed?: Tensor): Array<Tensor | undefined> => {
  const graph = output.graph
  if (seed === undefined && output.rank !== 0) {
    throw new GraphError({
      graph: graph.name,
      message: `${graph.name}: grad of a non-scalar [${output.shape}] needs a seed`
    })
  }
  // Tensors that depend on some wrt: only their producers need a backward rule.
  const depends = new Set(wrt.map((t) => t.id))
  for (const node of graph.nodes) if (node.inputs.some((i) => depends.has(i.id))) depends.add(node.output.id)
  const grads = new Map<number, Tensor>([[output.id, seed ?? graph.scalar(1, output.dtype)]])
  const nodes = graph.nodes.slice()
  for (let n = nodes.length - 1; n >= 0; n--) {
    const node = nodes[n]
    const g = grads.get(node.output.id)
    if (g === undefined || !depends.has(node.output.id)) continue
    const rule = RULES[node.op]
    if (rule === undefined) {
      throw new GraphError({ graph: graph.name, message: `${graph.name}: no gradient rule for ${node.op}` })
    }
    const inputGrads = rule(node, g)
    node.inputs.forEach((input, i) => {
      const gi = inputGrads[i]
      if (gi === undefined || !depends.has(input.id) || !isFloat(input)) return
      const prev = grads.get(input.id)
      grads.set(input.id, prev === undefined ? gi : op.add(prev, gi))
    })
  }
  return wrt.map((t) => grads.get(t.id))
}
