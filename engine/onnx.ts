/**
 * ONNX emission: a Graph → ModelProto bytes (onnx-proto), opset 17. Tensors are named after their
 * inputs and outputs; an output takes the name of its producing node's output directly, because an
 * Identity node just to name an output costs a full copy per run (docs/onnxruntime.md).
 */
import onnxProto from "onnx-proto"
import { type ConstantData, type DType, type Graph, GraphError, type Tensor } from "./graph.ts"

const { onnx } = onnxProto
export const OPSET = 17

const DTYPES: Record<DType, number> = { float32: 1, bool: 9, int64: 7, float64: 11 }

const bytesOf = (data: ConstantData): Uint8Array => new Uint8Array(data.buffer, data.byteOffset, data.byteLength)

const valueInfo = (name: string, t: Tensor) =>
  onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: DTYPES[t.dtype],
        shape: { dim: t.shape.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) }
      }
    }
  })

const attribute = (name: string, value: number | string | ReadonlyArray<number>, op: string) => {
  if (name === "to") {
    return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: DTYPES[value as DType] })
  }
  if (typeof value === "number") {
    // A non-integer is a FLOAT attribute (an epsilon, Gemm's alpha); the engine's own ops write integers.
    return Number.isInteger(value)
      ? onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: value })
      : onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value })
  }
  if (typeof value === "string") {
    return onnx.AttributeProto.create({
      name,
      type: onnx.AttributeProto.AttributeType.STRING,
      s: new TextEncoder().encode(value)
    })
  }
  if (Array.isArray(value)) {
    return onnx.AttributeProto.create({
      name,
      type: onnx.AttributeProto.AttributeType.INTS,
      ints: value as Array<number>
    })
  }
  throw new GraphError({ graph: op, message: `${op}: attribute ${name} has an unsupported value` })
}

export interface EmitOptions {
  /** Graph inputs to bake in as initializers (exported weights), by input name. */
  readonly initializers?: Readonly<Record<string, ConstantData>>
  /** Free-form metadata stored in the model (e.g. etaflow version, model config). */
  readonly metadata?: Readonly<Record<string, string>>
}

/**
 * Nodes the outputs depend on. Autodiff builds both products of every MatMul and drops the unused
 * one afterwards (e.g. the input gradient of a weight-only training step); onnxruntime would still
 * run such nodes, so they are not emitted.
 */
const liveNodes = (graph: Graph): Set<number> => {
  const live = new Set<number>()
  const needed = new Set(graph.outputs.map((o) => o.tensor.id))
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i]
    if (!needed.has(node.output.id)) continue
    live.add(i)
    for (const input of node.inputs) needed.add(input.id)
  }
  return live
}

/** An input given its values at export: an initializer of its (fixed) shape, checked against the values. */
const bakedInput = (graph: Graph, input: Graph["inputs"][number], data: ConstantData) => {
  const shape = input.tensor.shape
  if (!shape.every((d) => typeof d === "number")) {
    throw new GraphError({
      graph: graph.name,
      message: `${graph.name}: cannot bake input ${input.name} of symbolic shape [${shape}]`
    })
  }
  if (data.length !== (shape as Array<number>).reduce((a, b) => a * b, 1)) {
    throw new GraphError({
      graph: graph.name,
      message: `${graph.name}: weights for ${input.name} have ${data.length} values, expected shape [${shape}]`
    })
  }
  return onnx.TensorProto.create({
    name: input.name,
    dims: shape as Array<number>,
    dataType: DTYPES[input.tensor.dtype],
    rawData: bytesOf(data)
  })
}

export const toOnnx = (graph: Graph, options: EmitOptions = {}): Uint8Array => {
  const names = new Map<number, string>()
  const live = liveNodes(graph)
  const used = new Set(graph.outputs.map((o) => o.tensor.id))
  graph.nodes.forEach((node, i) => live.has(i) && node.inputs.forEach((t) => used.add(t.id)))
  const baked = options.initializers ?? {}
  for (const { name, tensor } of graph.inputs) names.set(tensor.id, name)
  const identities: Array<ReturnType<typeof onnx.NodeProto.create>> = []
  for (const { name, tensor } of graph.outputs) {
    const producedHere = tensor.producer !== undefined && !names.has(tensor.id)
    if (producedHere) names.set(tensor.id, name)
    else {identities.push(
        onnx.NodeProto.create({ opType: "Identity", input: [nameOf(tensor)], output: [name], name: `identity_${name}` })
      )}
  }
  function nameOf(t: Tensor): string {
    let n = names.get(t.id)
    if (n === undefined) {
      n = `t${t.id}`
      names.set(t.id, n)
    }
    return n
  }
  const nodes = graph.nodes.flatMap((node, i) =>
    !live.has(i) ? [] : [
      onnx.NodeProto.create({
        name: `${node.op.toLowerCase()}_${i}`,
        opType: node.op,
        input: node.inputs.map(nameOf),
        output: [nameOf(node.output)],
        attribute: Object.entries(node.attrs).map(([k, v]) => attribute(k, v, node.op))
      })
    ]
  )
  const initializer = [
    ...graph.constants.filter((c) => used.has(c.tensor.id)).map((c) =>
      onnx.TensorProto.create({
        name: nameOf(c.tensor),
        dims: c.tensor.shape as Array<number>,
        dataType: DTYPES[c.tensor.dtype],
        rawData: bytesOf(c.data)
      })
    ),
    ...graph.inputs.filter((i) => i.name in baked).map((i) => bakedInput(graph, i, baked[i.name]))
  ]
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: "etaflow",
    opsetImport: [{ domain: "", version: OPSET }],
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: onnx.GraphProto.create({
      name: graph.name,
      node: [...nodes, ...identities],
      initializer,
      input: graph.inputs.filter((i) => !(i.name in baked)).map((i) => valueInfo(i.name, i.tensor)),
      output: graph.outputs.map((o) => valueInfo(o.name, o.tensor))
    })
  })
  return onnx.ModelProto.encode(model).finish()
}
