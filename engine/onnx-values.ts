/**
 * Values known while importing an ONNX graph: constants, and the shape arithmetic PyTorch exports
 * around them (Shape → Gather → Unsqueeze → Concat → Reshape). They are folded on the host for the
 * graph's fixed sizes; a dimension known only at run time (the batch) is carried as its name, so a
 * shape with one such entry becomes a Reshape with −1 there.
 */
import { type Dim, type DType, type Graph, type Tensor } from "./graph.ts"

/** A host-side value: dims, and row-major data (symbolic dimension names only in int64 shape vectors). */
export interface Known {
  readonly dtype: DType
  readonly dims: ReadonlyArray<number>
  readonly data: ReadonlyArray<Dim>
}

export class FoldError extends Error {}

/** ONNX TensorProto element types the engine has. */
export const DTYPE_CODES: Readonly<Record<number, DType>> = { 1: "float32", 7: "int64", 9: "bool", 11: "float64" }

const size = (dims: ReadonlyArray<number>) => dims.reduce((a, b) => a * b, 1)

export const knownOf = (dtype: DType, dims: ReadonlyArray<number>, data: ReadonlyArray<Dim>): Known => {
  if (data.length !== size(dims)) throw new FoldError(`a value of shape [${dims}] given ${data.length} entries`)
  return { dtype, dims, data }
}

export const scalarOf = (k: Known, what: string): Dim => {
  if (k.data.length !== 1) throw new FoldError(`${what} must be one value, got shape [${k.dims}]`)
  return k.data[0]
}

export const numbersOf = (k: Known, what: string): Array<number> =>
  k.data.map((d) => (typeof d === "number" ? d : failSymbolic(what, d)))

const failSymbolic = (what: string, d: string): never => {
  throw new FoldError(`${what} depends on the run-time size "${d}"`)
}

/** The value as a graph constant (it must not depend on a run-time size). */
export const materialize = (g: Graph, k: Known, what: string): Tensor => {
  const values = numbersOf(k, what)
  if (k.dtype === "int64") return g.constant(BigInt64Array.from(values, (v) => BigInt(v)), k.dims, "int64")
  if (k.dtype === "bool") return g.constant(Uint8Array.from(values), k.dims, "bool")
  return g.constant(k.dtype === "float64" ? Float64Array.from(values) : Float32Array.from(values), k.dims, k.dtype)
}

/** NumPy broadcasting of known values through `f`. */
const broadcast = (xs: ReadonlyArray<Known>, dtype: DType, f: (vs: ReadonlyArray<Dim>) => Dim): Known => {
  const rank = Math.max(...xs.map((k) => k.dims.length))
  const padded = xs.map((k) => [...Array(rank - k.dims.length).fill(1), ...k.dims] as Array<number>)
  const dims = Array.from({ length: rank }, (_, i) => Math.max(...padded.map((d) => d[i])))
  if (padded.some((d) => d.some((n, i) => n !== 1 && n !== dims[i]))) {
    throw new FoldError(`cannot broadcast ${xs.map((k) => `[${k.dims}]`).join(" with ")}`)
  }
  const at = (d: ReadonlyArray<number>, index: ReadonlyArray<number>) =>
    index.reduce((flat, i, axis) => flat * d[axis] + (d[axis] === 1 ? 0 : i), 0)
  const data = Array.from({ length: size(dims) }, (_, flat) => {
    const index: Array<number> = []
    for (let axis = rank - 1, r = flat; axis >= 0; axis--) {
      index.unshift(r % dims[axis])
      r = Math.floor(r / dims[axis])
    }
    return f(xs.map((k, j) => k.data[at(padded[j], index)]))
  })
  return { dtype, dims, data }
}

/** Integer arithmetic; with a symbolic operand the result is a new name (a product B·N, say). */
const arithmetic = (name: string, f: (x: number, y: number) => number, unit?: number) => (a: Known, b: Known) =>
  broadcast([a, b], a.dtype, ([x, y]) => {
    if (typeof x === "number" && typeof y === "number") {
      const v = f(x, y)
      // float32 rounding per op: IEEE arithmetic is correctly rounded, so this is onnxruntime's value.
      return a.dtype === "int64" ? Math.trunc(v) : a.dtype === "float32" ? Math.fround(v) : v
    }
    if (unit !== undefined && y === unit) return x
    if (unit !== undefined && name === "Mul" && x === unit) return y
    return `(${x}${name === "Mul" ? "*" : name === "Div" ? "/" : name === "Add" ? "+" : "-"}${y})`
  })

const equal = (a: Known, b: Known) =>
  broadcast([a, b], "bool", ([x, y]) => {
    if (typeof x === "number" && typeof y === "number") return x === y ? 1 : 0
    if (x === y) return 1
    // A run-time size is ≥ 1: it differs from PyTorch's −1 and 0 markers; anything else is undecidable.
    const other = typeof x === "number" ? x : y
    if (typeof other === "number" && other < 1) return 0
    throw new FoldError(`cannot decide whether the run-time size "${typeof x === "string" ? x : y}" equals ${other}`)
  })

/** Folds a whole node of known inputs, or returns undefined when `op` is not a host-side op. */
export const fold = (
  op: string,
  xs: ReadonlyArray<Known>,
  attrs: Readonly<Record<string, unknown>>
): Known | undefined => {
  switch (op) {
    case "Add":
      return arithmetic("Add", (x, y) => x + y, 0)(xs[0], xs[1])
    case "Sub":
      return arithmetic("Sub", (x, y) => x - y, 0)(xs[0], xs[1])
    case "Mul":
      return arithmetic("Mul", (x, y) => x * y, 1)(xs[0], xs[1])
    case "Div":
      return arithmetic("Div", (x, y) => x / y, 1)(xs[0], xs[1])
    case "Equal":
      return equal(xs[0], xs[1])
    case "Where":
      return broadcast(xs, xs[1].dtype, ([c, x, y]) => (c === 1 ? x : y))
    case "Cast":
      return { ...xs[0], dtype: DTYPE_CODES[Number(attrs.to)] ?? "float32" }
    case "Identity":
      return xs[0]
    default:
      return foldShape(op, xs, attrs)
  }
}

const foldShape = (op: string, xs: ReadonlyArray<Known>, attrs: Readonly<Record<string, unknown>>) => {
  const [x] = xs
  const axis = (a: number, rank: number) => (a < 0 ? a + rank : a)
  switch (op) {
    case "Unsqueeze": {
      const axes = xs[1] === undefined ? (attrs.axes as Array<number>) : numbersOf(xs[1], "Unsqueeze axes")
      const rank = x.dims.length + axes.length
      const ax = axes.map((a) => axis(a, rank))
      const dims: Array<number> = []
      for (let i = 0, j = 0; i < rank; i++) dims.push(ax.includes(i) ? 1 : x.dims[j++])
      return { ...x, dims }
    }
    case "Squeeze":
      return { ...x, dims: x.dims.filter((d) => d !== 1) }
    case "Reshape": {
      const target = numbersOf(xs[1], "a folded Reshape's shape").map((d, i) => (d === 0 ? x.dims[i] : d))
      const known = target.filter((d) => d !== -1).reduce((a, b) => a * b, 1)
      return { ...x, dims: target.map((d) => (d === -1 ? x.data.length / known : d)) }
    }
    case "Concat": {
      if (xs.some((k) => k.dims.length !== 1)) return undefined
      return { dtype: x.dtype, dims: [xs.reduce((n, k) => n + k.data.length, 0)], data: xs.flatMap((k) => k.data) }
    }
    case "Gather": {
      if (x.dims.length !== 1) return undefined
      const picks = numbersOf(xs[1], "Gather indices")
      return { dtype: x.dtype, dims: xs[1].dims, data: picks.map((i) => x.data[i < 0 ? i + x.data.length : i]) }
    }
    case "Slice": {
      if (x.dims.length !== 1) return undefined
      const [start, end] = [numbersOf(xs[1], "Slice starts")[0], numbersOf(xs[2], "Slice ends")[0]]
      const n = x.data.length
      const clamp = (v: number) => Math.max(0, Math.min(n, v < 0 ? v + n : v))
      const data = x.data.slice(clamp(start), clamp(end))
      return { dtype: x.dtype, dims: [data.length], data }
    }
    case "ConstantOfShape": {
      const dims = numbersOf(x, "ConstantOfShape's shape")
      const value = (attrs.value as Known | undefined) ?? { dtype: "float32", dims: [1], data: [0] }
      return { dtype: value.dtype, dims, data: Array(size(dims)).fill(value.data[0]) }
    }
    case "Range": {
      const [start, limit, delta] = xs.map((k) => numbersOf(k, "Range")[0])
      const n = Math.max(0, Math.ceil((limit - start) / delta))
      return { dtype: x.dtype, dims: [n], data: Array.from({ length: n }, (_, i) => start + i * delta) }
    }
    default:
      return undefined
  }
}
