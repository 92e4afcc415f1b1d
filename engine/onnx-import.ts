/**
 * ONNX import: a ModelProto read back into the engine's graph IR, so a model exported elsewhere (by
 * `torch.onnx.export`, or by etaflow) becomes part of a larger graph and differentiable by autodiff.ts:
 * reward gradients ∇ₓ r(x) for adjoint matching, and imported policies trained by every pipeline
 * (their float initializers bound to parameter tensors). Shape arithmetic is folded on the host
 * (onnx-values.ts); every other op is lowered by onnx-importers.ts, and an op outside them fails
 * naming the op, its node and where its result is used, before anything runs.
 */
import onnxProto from "onnx-proto"
import { type ConstantData, type Dim, type Graph, GraphError, type Tensor } from "./graph.ts"
import { type Attrs, type AttrValue, IMPORTERS, type NodeArgs } from "./onnx-importers.ts"
import { DTYPE_CODES, fold, FoldError, type Known, knownOf, materialize } from "./onnx-values.ts"

const { onnx } = onnxProto
type ModelProto = onnxProto.onnx.ModelProto
type NodeProto = onnxProto.onnx.INodeProto

/** Host-folded ops (their results are shapes and constants, never tensors of the graph). */
const HOST_OPS = ["Constant", "Shape", "ConstantOfShape", "Range"]
export const IMPORTABLE_OPS: ReadonlyArray<string> = [...Object.keys(IMPORTERS), ...HOST_OPS].sort()

const decoded = new WeakMap<Uint8Array, ModelProto>()
/** The decoded model (cached per buffer: a policy's graph is built for every session shape). */
export const decodeOnnx = (bytes: Uint8Array): ModelProto => {
  const hit = decoded.get(bytes)
  if (hit !== undefined) return hit
  const model = onnx.ModelProto.decode(bytes)
  decoded.set(bytes, model)
  return model
}

/** A tensor's element type, shape and values as a typed array (a weight is never a JS array). */
const tensorData = (t: onnxProto.onnx.ITensorProto) => {
  const dtype = DTYPE_CODES[t.dataType ?? 0]
  if (dtype === undefined) throw new FoldError(`tensor ${t.name ?? ""} has the unsupported element type ${t.dataType}`)
  const dims = (t.dims ?? []).map(Number)
  const raw = t.rawData ?? new Uint8Array(0)
  // A copy: protobufjs hands out Node Buffers, whose slice() is a view into the whole file.
  const bytes = new Uint8Array(raw).buffer
  const data: ConstantData = raw.length > 0
    ? dtype === "float32"
      ? new Float32Array(bytes)
      : dtype === "float64"
      ? new Float64Array(bytes)
      : dtype === "int64"
      ? new BigInt64Array(bytes)
      : new Uint8Array(bytes)
    : dtype === "float32"
    ? Float32Array.from(t.floatData ?? [])
    : dtype === "float64"
    ? Float64Array.from(t.doubleData ?? [])
    : dtype === "int64"
    ? BigInt64Array.from(t.int64Data ?? [], (v) => BigInt(v.toString()))
    : Uint8Array.from(t.int32Data ?? [])
  return { dtype, dims, data }
}

const tensorValues = (t: onnxProto.onnx.ITensorProto): Known => {
  const { dtype, dims, data } = tensorData(t)
  return knownOf(dtype, dims, Array.from(data as ArrayLike<number | bigint>, Number))
}

const attrsOf = (node: NodeProto): Attrs =>
  Object.fromEntries((node.attribute ?? []).map((a): [string, AttrValue] => {
    const T = onnx.AttributeProto.AttributeType
    const value = a.type === T.FLOAT
      ? Number(a.f)
      : a.type === T.STRING
      ? new TextDecoder().decode(a.s ?? new Uint8Array())
      : a.type === T.TENSOR
      ? tensorValues(a.t ?? {})
      : a.type === T.INTS
      ? (a.ints ?? []).map(Number)
      : a.type === T.FLOATS
      ? (a.floats ?? []).map(Number)
      : Number(a.i)
    return [a.name ?? "", value]
  }))

/** A Constant node's value, in whichever attribute it is given. */
const constantValue = (attrs: Attrs): Known => {
  if (attrs.value !== undefined) return attrs.value as Known
  const one = attrs.value_float ?? attrs.value_int
  if (one !== undefined) return knownOf(attrs.value_float !== undefined ? "float32" : "int64", [], [one as number])
  const many = (attrs.value_floats ?? attrs.value_ints) as ReadonlyArray<number> | undefined
  if (many === undefined) throw new FoldError("a Constant with no value")
  return knownOf(attrs.value_floats !== undefined ? "float32" : "int64", [many.length], many)
}

export interface ImportOptions {
  /** Tensors standing for initializers, by name (a policy's trainable weights); the others are constants. */
  readonly weights?: Readonly<Record<string, Tensor>>
}

/** Where a node's result goes, for error messages. */
const usedBy = (nodes: ReadonlyArray<NodeProto>, outputs: ReadonlyArray<string>, name: string) => {
  const readers = nodes.filter((n) => (n.input ?? []).some((i) => outputs.includes(i))).map((n) => n.name || n.opType)
  return readers.length > 0 ? `its result feeds ${readers.slice(0, 3).join(", ")}` : `its result is output ${name}`
}

/**
 * The first op of the file the importer cannot read, as a message naming the op, its node and where it
 * is used; undefined when every op can be imported (what a pipeline checks before any folder exists).
 */
export const unsupportedOp = (bytes: Uint8Array, source: string): string | undefined => {
  const nodes = decodeOnnx(bytes).graph?.node ?? []
  for (const [i, node] of nodes.entries()) {
    const type = node.opType ?? ""
    if ((node.domain ?? "") === "" && IMPORTABLE_OPS.includes(type)) continue
    const outputs = node.output ?? []
    return `${source}: node ${node.name || i} (op ${node.domain ? `${node.domain}.` : ""}${type}, node ${
      i + 1
    } of ${nodes.length}; ${usedBy(nodes, outputs, outputs[0] ?? "")}) cannot be imported (importable ops: ${
      IMPORTABLE_OPS.join(", ")
    })`
  }
  return undefined
}

/**
 * Reads the ONNX model `bytes` into `graph`, with its inputs bound to `inputs` (by name), its
 * initializers as constants or as `options.weights`; returns its outputs by name. `source` names the
 * model in errors.
 */
export const importOnnx = (
  graph: Graph,
  bytes: Uint8Array,
  inputs: Readonly<Record<string, Tensor>>,
  source: string,
  options: ImportOptions = {}
): Record<string, Tensor> => {
  const fail = (message: string): never => {
    throw new GraphError({ graph: graph.name, message: `${source}: ${message}` })
  }
  const model = decodeOnnx(bytes)
  const g = model.graph ?? fail("the file holds no graph")
  const opset = Number(model.opsetImport?.find((o) => (o.domain ?? "") === "")?.version ?? 17)
  const values = new Map<string, Tensor | Known>()
  for (const init of g.initializer ?? []) {
    const name = init.name ?? ""
    const weight = options.weights?.[name]
    values.set(name, weight ?? initializerValue(graph, init))
  }
  for (const input of g.input ?? []) {
    const name = input.name ?? ""
    if (values.has(name)) continue
    values.set(name, inputs[name] ?? fail(`input "${name}" is not bound (given: ${Object.keys(inputs).join(", ")})`))
  }
  const nodes = g.node ?? []
  for (const [i, node] of nodes.entries()) {
    const where = `node ${node.name || i} (${node.opType})`
    try {
      const results = importNode(graph, node, opset, values)
      ;(node.output ?? []).forEach((name, k) => results[k] !== undefined && values.set(name, results[k]))
    } catch (e) {
      if (e instanceof GraphError && e.message.startsWith(source)) throw e
      fail(`${where}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  const tensorOf = (name: string) => {
    const v = values.get(name) ?? fail(`output "${name}" is never computed`)
    return isKnown(v) ? constantOf(graph, v, `output ${name}`) : v
  }
  return Object.fromEntries((g.output ?? []).map((o) => [o.name ?? "", tensorOf(o.name ?? "")]))
}

const isKnown = (v: Tensor | Known): v is Known => "data" in v

/**
 * Integer initializers (shapes, indices) and small float ones (Resize scales, epsilons, exponents given as
 * initializers) stay on the host, where folding reads them; weights become graph constants.
 */
const SMALL = 64
const initializerValue = (graph: Graph, init: onnxProto.onnx.ITensorProto): Tensor | Known => {
  const { dtype, dims, data } = tensorData(init)
  const weight = (dtype === "float32" || dtype === "float64") && data.length > SMALL
  return weight ? graph.constant(data, dims, dtype) : tensorValues(init)
}

/** One graph constant per host value, however many nodes read it. */
const constants = new WeakMap<Known, Tensor>()
const constantOf = (graph: Graph, k: Known, what: string): Tensor => {
  const hit = constants.get(k)
  if (hit !== undefined && hit.graph === graph) return hit
  const t = materialize(graph, k, what)
  constants.set(k, t)
  return t
}

const importNode = (
  graph: Graph,
  node: NodeProto,
  opset: number,
  values: Map<string, Tensor | Known>
): ReadonlyArray<Tensor | Known> => {
  const type = node.opType ?? ""
  if ((node.domain ?? "") !== "") throw new FoldError(`op domain "${node.domain}" is not supported`)
  const attrs = attrsOf(node)
  const names = node.input ?? []
  const args = names.map((n) => (n === "" ? undefined : values.get(n) ?? undefined))
  names.forEach((n, i) => {
    if (n !== "" && args[i] === undefined) throw new FoldError(`input "${n}" is not defined before it`)
  })
  if (type === "Constant") return [constantValue(attrs)]
  if (type === "Shape") return [shapeOf(args[0]!, attrs)]
  const present = args.filter((v): v is Tensor | Known => v !== undefined)
  if (present.length > 0 && present.every(isKnown)) {
    const folded = fold(type, args.map((v) => v as Known), attrs)
    if (folded !== undefined) return [folded]
  }
  const importer = IMPORTERS[type]
  if (importer === undefined) {
    throw new FoldError(`op ${type} cannot be imported (importable ops: ${IMPORTABLE_OPS.join(", ")})`)
  }
  const nodeArgs: NodeArgs = {
    graph,
    attrs,
    opset,
    count: names.length,
    has: (i) => args[i] !== undefined,
    isKnown: (i) => args[i] !== undefined && isKnown(args[i]!),
    tensor: (i) => {
      const v = args[i] ?? (() => {
        throw new FoldError(`input ${i} is missing`)
      })()
      return isKnown(v) ? constantOf(graph, v, `input ${i}`) : v
    },
    known: (i) => {
      const v = args[i]
      if (v === undefined || !isKnown(v)) throw new FoldError(`input ${i} (${names[i]}) must be a constant here`)
      return v
    },
    fail: (message) => {
      throw new FoldError(message)
    }
  }
  const out = importer(nodeArgs)
  return Array.isArray(out) ? out : [out as Tensor]
}

/** Shape (with opset 15's start/end): sizes known now, and run-time ones by name. */
const shapeOf = (x: Tensor | Known, attrs: Attrs): Known => {
  const dims: ReadonlyArray<Dim> = "data" in x ? x.dims : x.shape
  const n = dims.length
  const clamp = (v: number) => Math.max(0, Math.min(n, v < 0 ? v + n : v))
  const picked = dims.slice(clamp(Number(attrs.start ?? 0)), clamp(Number(attrs.end ?? n)))
  return knownOf("int64", [picked.length], picked)
}

/** The float initializers of a model (its weights), in file order: what an imported policy trains. */
export const onnxWeights = (
  bytes: Uint8Array
): Array<{ readonly name: string; readonly dims: Array<number>; readonly data: Float32Array }> =>
  (decodeOnnx(bytes).graph?.initializer ?? []).flatMap((init) => {
    const { dtype, dims, data } = tensorData(init)
    return dtype === "float32" ? [{ name: init.name ?? "", dims, data: data as Float32Array }] : []
  })

/** The model file with the named float initializers' values replaced (a fine-tuned imported network). */
export const withWeights = (bytes: Uint8Array, weights: Readonly<Record<string, Float32Array>>): Uint8Array => {
  const model = onnx.ModelProto.decode(bytes)
  for (const init of model.graph?.initializer ?? []) {
    const w = weights[init.name ?? ""]
    if (w === undefined) continue
    init.rawData = new Uint8Array(w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength))
    init.floatData = []
  }
  return onnx.ModelProto.encode(model).finish()
}
