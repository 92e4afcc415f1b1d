/**
 * ONNX ops as the engine's differentiable ops: each importer lowers one ONNX op (opsets 13–18, as
 * `torch.onnx.export` writes them) onto ops with backward rules. Normalisations become their
 * reductions, Resize (nearest, integer scale) becomes copies and a Reshape, Split becomes Slices, so
 * only Conv, ConvTranspose and Erf needed rules of their own.
 */
import { conv2d, type ConvAttrs, convTranspose2d } from "./conv.ts"
import type { Dim, Graph, Tensor } from "./graph.ts"
import { DTYPE_CODES, type Known, numbersOf, scalarOf } from "./onnx-values.ts"
import * as op from "./ops.ts"

export type AttrValue = number | string | ReadonlyArray<number> | Known
export type Attrs = Readonly<Record<string, AttrValue>>

export interface NodeArgs {
  readonly graph: Graph
  readonly attrs: Attrs
  readonly opset: number
  /** Inputs given (empty optional inputs excluded at the end, kept as absent in the middle). */
  readonly count: number
  readonly has: (i: number) => boolean
  /** Input i is known on the host (a constant, or folded shape arithmetic). */
  readonly isKnown: (i: number) => boolean
  readonly tensor: (i: number) => Tensor
  readonly known: (i: number) => Known
  readonly fail: (message: string) => never
}

type Importer = (a: NodeArgs) => Tensor | ReadonlyArray<Tensor>

const int = (a: NodeArgs, name: string, fallback: number) => Number(a.attrs[name] ?? fallback)
const ints = (a: NodeArgs, name: string): ReadonlyArray<number> | undefined => a.attrs[name] as never

/** Reshape to sizes where at most one is known only at run time (it becomes −1). */
const reshapeTo = (x: Tensor, dims: ReadonlyArray<Dim>, fail: (m: string) => never): Tensor => {
  const free = dims.filter((d) => typeof d === "string")
  if (free.length === 0) return op.reshape(x, dims as ReadonlyArray<number>)
  if (free.length > 1) fail(`a reshape to [${dims}] has more than one size known only at run time`)
  return op.reshape(x, dims.map((d) => (typeof d === "string" ? -1 : d)), dims)
}

const axisOf = (x: Tensor, axis: number) => (axis < 0 ? axis + x.rank : axis)

/** Axes from the attribute (before opset 13/18) or the second input (after). */
const axesOf = (a: NodeArgs, x: Tensor): ReadonlyArray<number> | undefined => {
  const given = a.has(1) ? numbersOf(a.known(1), "axes") : ints(a, "axes")
  return given?.map((ax) => axisOf(x, ax))
}

const unary = (f: (x: Tensor) => Tensor): Importer => (a) => f(a.tensor(0))
const binary = (f: (x: Tensor, y: Tensor) => Tensor): Importer => (a) => f(a.tensor(0), a.tensor(1))

/** A per-channel vector [C] broadcast over NC… */
const perChannel = (v: Tensor, rank: number) => op.reshape(v, [1, v.shape[0] as number, ...Array(rank - 2).fill(1)])

const convAttrs = (a: NodeArgs, x: Tensor): ConvAttrs => {
  if ((a.attrs.auto_pad ?? "NOTSET") !== "NOTSET") a.fail(`auto_pad ${a.attrs.auto_pad} is not supported (use pads)`)
  if (x.rank !== 4) a.fail(`only 2-D convolutions are supported, got input [${x.shape}]`)
  if ((ints(a, "dilations") ?? [1, 1]).some((d) => d !== 1)) a.fail(`dilations ${ints(a, "dilations")} ≠ 1`)
  const s = ints(a, "strides") ?? [1, 1]
  const p = ints(a, "pads") ?? [0, 0, 0, 0]
  return { strides: [s[0], s[1]], pads: [p[0], p[1], p[2], p[3]], group: int(a, "group", 1) }
}

const withBias = (a: NodeArgs, y: Tensor) => (a.has(2) ? op.add(y, perChannel(a.tensor(2), 4)) : y)

const conv: Importer = (a) => withBias(a, conv2d(a.tensor(0), a.tensor(1), convAttrs(a, a.tensor(0))))

const convTranspose: Importer = (a) => {
  if (a.attrs.output_shape !== undefined) a.fail("output_shape is not supported (give pads and output_padding)")
  const o = ints(a, "output_padding") ?? [0, 0]
  return withBias(a, convTranspose2d(a.tensor(0), a.tensor(1), convAttrs(a, a.tensor(0)), [o[0], o[1]]))
}

/** Nearest-neighbour upsampling by integer factors, as copies along new axes and a Reshape. */
const nearest = (a: NodeArgs, x: Tensor, scales: ReadonlyArray<number>) => {
  const mode = String(a.attrs.mode ?? "nearest")
  const transform = String(a.attrs.coordinate_transformation_mode ?? "half_pixel")
  if (mode !== "nearest") a.fail(`mode ${mode} is not supported (nearest only)`)
  // With an integer factor s every source coordinate of these transforms rounds to ⌊i/s⌋.
  if (!["asymmetric", "half_pixel", "pytorch_half_pixel"].includes(transform)) {
    a.fail(`coordinate_transformation_mode ${transform} is not supported`)
  }
  if (scales.length !== x.rank || scales.some((s) => !Number.isInteger(s) || s < 1)) {
    a.fail(`scales [${scales}] are not integer upsampling factors of [${x.shape}]`)
  }
  let y = x
  const dims: Array<Dim> = []
  for (let axis = x.rank - 1; axis >= 0; axis--) {
    const s = scales[axis]
    const size = x.shape[axis]
    dims.unshift(s === 1 ? size : typeof size === "number" ? size * s : a.fail(`cannot upsample a run-time size`))
    if (s === 1) continue
    const at = axis + 1
    const widened = op.unsqueeze(y, [at])
    y = op.concat(Array(s).fill(widened), at)
    y = reshapeTo(y, [...y.shape.slice(0, axis), dims[0], ...y.shape.slice(at + 1)], a.fail)
  }
  return y
}

const resize: Importer = (a) => {
  const x = a.tensor(0)
  if (a.has(3)) {
    const sizes = numbersOf(a.known(3), "Resize sizes")
    return nearest(a, x, sizes.map((s, i) => s / (x.shape[i] as number)))
  }
  return nearest(a, x, numbersOf(a.known(a.count === 2 ? 1 : 2), "Resize scales"))
}

const slice: Importer = (a) => {
  let x = a.tensor(0)
  const starts = numbersOf(a.known(1), "Slice starts")
  const ends = numbersOf(a.known(2), "Slice ends")
  const axes = a.has(3) ? numbersOf(a.known(3), "Slice axes") : starts.map((_, i) => i)
  const steps = a.has(4) ? numbersOf(a.known(4), "Slice steps") : starts.map(() => 1)
  if (steps.some((s) => s !== 1)) a.fail(`steps [${steps}] ≠ 1 are not supported`)
  axes.forEach((axis, i) => {
    const ax = axisOf(x, axis)
    const n = x.shape[ax]
    if (typeof n !== "number") a.fail(`slicing the run-time size "${n}" is not supported`)
    const clamp = (v: number) => Math.max(0, Math.min(n as number, v < 0 ? v + (n as number) : v))
    const [s, e] = [clamp(starts[i]), clamp(ends[i])]
    if (s !== 0 || e !== n) x = op.slice(x, ax, s, e)
  })
  return x
}

const split: Importer = (a) => {
  const x = a.tensor(0)
  const axis = axisOf(x, int(a, "axis", 0))
  const n = x.shape[axis] as number
  // Opset 18's num_outputs: equal parts of ⌈n/k⌉, the last one smaller.
  const parts = int(a, "num_outputs", 0)
  const each = Math.ceil(n / parts)
  const sizes = a.has(1)
    ? numbersOf(a.known(1), "Split sizes")
    : ints(a, "split") ?? Array.from({ length: parts }, (_, i) => Math.min(each, n - i * each))
  let start = 0
  return sizes.map((s) => op.slice(x, axis, start, start += s))
}

const gather: Importer = (a) => {
  const data = a.tensor(0)
  const axis = axisOf(data, int(a, "axis", 0))
  if (!a.has(1)) a.fail("Gather needs indices")
  if (!a.isKnown(1)) {
    // Run-time indices: an embedding table's rows (its gradient is a one-hot product, autodiff.ts).
    if (axis !== 0) a.fail(`a run-time Gather along axis ${axis} is not supported (axis 0 only)`)
    return op.gather(data, a.tensor(1))
  }
  const indices = a.known(1)
  // Constant indices (attention's q, k, v = qkv[0], qkv[1], qkv[2]): slices.
  const n = data.shape[axis] as number
  const picks = numbersOf(indices, "Gather indices").map((i) => (i < 0 ? i + n : i))
  const parts = picks.map((i) => op.slice(data, axis, i, i + 1))
  const joined = parts.length === 1 ? parts[0] : op.concat(parts, axis)
  const dims = [...data.shape.slice(0, axis), ...indices.dims, ...data.shape.slice(axis + 1)]
  return reshapeTo(joined, dims, a.fail)
}

const pow: Importer = (a) => {
  const x = a.tensor(0)
  const e = Number(scalarOf(a.known(1), "Pow's exponent"))
  if (e === 1) return x
  if (e === 2) return op.mul(x, x)
  if (e === 0.5) return op.sqrt(x)
  if (e === 3) return op.mul(op.mul(x, x), x)
  // Any other exponent as exp(e·log x): defined for x > 0, as PyTorch's real pow of a fractional power.
  return op.exp(op.mul(op.log(x), e))
}

const gemm: Importer = (a) => {
  const [alpha, beta] = [Number(a.attrs.alpha ?? 1), Number(a.attrs.beta ?? 1)]
  let y = op.gemm(a.tensor(0), a.tensor(1), a.attrs.transA === 1, a.attrs.transB === 1)
  if (alpha !== 1) y = op.mul(y, alpha)
  return a.has(2) ? op.add(y, beta === 1 ? a.tensor(2) : op.mul(a.tensor(2), beta)) : y
}

const instanceNorm: Importer = (a) => {
  const x = a.tensor(0)
  const axes = x.shape.map((_, i) => i).slice(2)
  const y = op.normalize(x, axes, Number(a.attrs.epsilon ?? 1e-5))
  return op.add(op.mul(y, perChannel(a.tensor(1), x.rank)), perChannel(a.tensor(2), x.rank))
}

const groupNorm: Importer = (a) => {
  const x = a.tensor(0)
  const groups = int(a, "num_groups", 0)
  const per = x.shape.slice(1).reduce<number>((p, d) => p * (d as number), 1) / groups
  const y = op.normalize(reshapeTo(x, [x.shape[0], groups, per], a.fail), [2], Number(a.attrs.epsilon ?? 1e-5))
  const [scale, bias] = [a.tensor(1), a.tensor(2)]
  if (scale.shape[0] === groups && groups !== x.shape[1]) {
    // Opset 18 gives scale and bias per group (opset 21 per channel): applied on the grouped view.
    const affine = op.add(op.mul(y, op.reshape(scale, [groups, 1])), op.reshape(bias, [groups, 1]))
    return reshapeTo(affine, x.shape, a.fail)
  }
  return op.add(op.mul(reshapeTo(y, x.shape, a.fail), perChannel(scale, x.rank)), perChannel(bias, x.rank))
}

const layerNorm: Importer = (a) => {
  const x = a.tensor(0)
  const from = axisOf(x, int(a, "axis", -1))
  const axes = x.shape.map((_, i) => i).slice(from)
  const y = op.mul(op.normalize(x, axes, Number(a.attrs.epsilon ?? 1e-5)), a.tensor(1))
  return a.has(2) ? op.add(y, a.tensor(2)) : y
}

const reduce = (f: typeof op.reduceSum): Importer => (a) => {
  const x = a.tensor(0)
  const axes = axesOf(a, x) ?? x.shape.map((_, i) => i)
  return f(x, axes, int(a, "keepdims", 1) === 1)
}

/**
 * A Reshape's target with ONNX's 0 (copy) and −1 (infer) resolved: the −1 takes the sizes of x that
 * the target does not name, a run-time size among them kept by name.
 */
const reshapeTarget = (a: NodeArgs, x: Tensor): Array<Dim> => {
  const dims = a.known(1).data.map((d, i) => (d === 0 && int(a, "allowzero", 0) === 0 ? x.shape[i] : d))
  if (!dims.includes(-1)) return dims
  const named = x.shape.filter((d): d is string => typeof d === "string")
  const free = named.filter((d) => !dims.includes(d))
  const product = (ds: ReadonlyArray<Dim>) =>
    ds.reduce<number>((p, d) => (typeof d === "number" && d !== -1 ? p * d : p), 1)
  const ratio = product(x.shape) / product(dims)
  const inferred = free.length === 0 ? ratio : ratio === 1 && free.length === 1 ? free[0] : [...free, ratio].join("*")
  return dims.map((d) => (d === -1 ? inferred : d))
}

export const IMPORTERS: Readonly<Record<string, Importer>> = {
  Add: binary(op.add),
  Sub: binary(op.sub),
  Mul: binary(op.mul),
  Div: binary(op.div),
  Max: binary(op.max),
  Min: binary(op.min),
  Pow: pow,
  Neg: unary(op.neg),
  Exp: unary(op.exp),
  Log: unary(op.log),
  Sqrt: unary(op.sqrt),
  Reciprocal: unary((x) => op.div(1, x)),
  Sin: unary(op.sin),
  Cos: unary(op.cos),
  Erf: unary(op.erf),
  Sigmoid: unary(op.sigmoid),
  Tanh: unary(op.tanh),
  Relu: unary((x) => op.max(x, 0)),
  Identity: unary((x) => x),
  MatMul: binary(op.matmul),
  Gemm: gemm,
  Conv: conv,
  ConvTranspose: convTranspose,
  InstanceNormalization: instanceNorm,
  GroupNormalization: groupNorm,
  LayerNormalization: layerNorm,
  ReduceMean: reduce(op.reduceMean),
  ReduceSum: reduce(op.reduceSum),
  Softmax: (a) => op.softmax(a.tensor(0), int(a, "axis", a.opset >= 13 ? -1 : 1)),
  LogSoftmax: (a) => op.logSoftmax(a.tensor(0), int(a, "axis", a.opset >= 13 ? -1 : 1)),
  Transpose: (a) => op.transpose(a.tensor(0), ints(a, "perm")),
  Concat: (a) => op.concat(Array.from({ length: a.count }, (_, i) => a.tensor(i)), int(a, "axis", 0)),
  Reshape: (a) => reshapeTo(a.tensor(0), reshapeTarget(a, a.tensor(0)), a.fail),
  Flatten: (a) => {
    const x = a.tensor(0)
    const axis = axisOf(x, int(a, "axis", 1))
    const prod = (ds: ReadonlyArray<Dim>) =>
      ds.every((d) => typeof d === "number") ? ds.reduce<number>((p, q) => p * (q as number), 1) : ds.join("*")
    return reshapeTo(x, [prod(x.shape.slice(0, axis)), prod(x.shape.slice(axis))], a.fail)
  },
  Unsqueeze: (a) => op.unsqueeze(a.tensor(0), axesOf(a, a.tensor(0)) ?? a.fail("Unsqueeze needs axes")),
  Squeeze: (a) => {
    const x = a.tensor(0)
    const axes = axesOf(a, x) ?? x.shape.flatMap((d, i) => (d === 1 ? [i] : []))
    return reshapeTo(x, x.shape.filter((_, i) => !axes.includes(i)), a.fail)
  },
  Expand: (a) => {
    const x = a.tensor(0)
    const target = a.known(1).data
    const dims = op.broadcastShapes(x.shape, target, x)
    // A run-time size in the target is x's own (broadcasting keeps it at 1 in the shape given to ONNX).
    target.forEach((d, i) => {
      const from = x.shape[x.rank - target.length + i]
      if (typeof d === "string" && from !== d) a.fail(`expanding [${x.shape}] to the run-time size "${d}"`)
    })
    return x.graph.node("Expand", [x, x.graph.ints(target.map((d) => (typeof d === "number" ? d : 1)))], x.dtype, dims)
  },
  Slice: slice,
  Split: split,
  Gather: gather,
  Resize: resize,
  Upsample: (a) => nearest(a, a.tensor(0), numbersOf(a.known(1), "Upsample scales")),
  Where: (a) => op.where(a.tensor(0), a.tensor(1), a.tensor(2)),
  Equal: binary(op.equal),
  Less: binary(op.less),
  LessOrEqual: binary(op.lessOrEqual),
  GreaterOrEqual: binary(op.greaterOrEqual),
  Greater: binary((x, y) => op.less(y, x)),
  And: binary(op.and),
  Cast: (a) => op.cast(a.tensor(0), DTYPE_CODES[int(a, "to", 1)] ?? a.fail(`Cast to type ${a.attrs.to}`))
}
