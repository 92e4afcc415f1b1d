/**
 * A small tensor-graph IR that emits ONNX: typed tensors with symbolic shapes, and nodes whose op
 * names are ONNX op types. Ops live in ops.ts, their gradients in autodiff.ts.
 */
import { Data } from "effect"
export type DType = "float32" | "float64" | "int64" | "bool"
/** A dimension: a number, or a name for a size known only at run time (e.g. the batch "B"). */
export type Dim = number | string
export type Shape = ReadonlyArray<Dim>

export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly dtype: DType,
    readonly shape: Shape,
    /** The node that produced it (undefined for inputs and constants). */
    readonly producer: OpNode | undefined
  ) {}
  get rank() {
    return this.shape.length
  }
}

export interface OpNode {
  readonly op: string
  readonly inputs: ReadonlyArray<Tensor>
  readonly output: Tensor
  readonly attrs: Readonly<Record<string, number | string | ReadonlyArray<number>>>
}

export type ConstantData = Float32Array | Float64Array | BigInt64Array | Uint8Array

export interface Constant {
  readonly tensor: Tensor
  readonly data: ConstantData
}

/** A graph cannot be built, differentiated or emitted as asked (it names the graph). */
export class GraphError extends Data.TaggedError("GraphError")<{ readonly graph: string; readonly message: string }> {}

export class Graph {
  readonly nodes: Array<OpNode> = []
  readonly inputs: Array<{ readonly name: string; readonly tensor: Tensor }> = []
  readonly constants: Array<Constant> = []
  readonly outputs: Array<{ readonly name: string; readonly tensor: Tensor }> = []
  private next = 0

  constructor(readonly name: string) {}

  private tensor(dtype: DType, shape: Shape, producer?: OpNode) {
    return new Tensor(this, this.next++, dtype, shape, producer)
  }

  /** A graph input (batch data, or weights while training: one session serves every step). */
  input(name: string, dtype: DType, shape: Shape): Tensor {
    if (this.inputs.some((i) => i.name === name)) {
      throw new GraphError({ graph: this.name, message: `${this.name}: duplicate input "${name}"` })
    }
    const t = this.tensor(dtype, shape)
    this.inputs.push({ name, tensor: t })
    return t
  }

  constant(data: ConstantData, shape: ReadonlyArray<number>, dtype?: DType): Tensor {
    const dt: DType = dtype ??
      (data instanceof Float64Array
        ? "float64"
        : data instanceof BigInt64Array
        ? "int64"
        : data instanceof Uint8Array
        ? "bool"
        : "float32")
    const size = shape.reduce((a, b) => a * b, 1)
    if (size !== data.length) {
      throw new GraphError({
        graph: this.name,
        message: `${this.name}: constant of shape [${shape}] given ${data.length} values`
      })
    }
    const t = this.tensor(dt, shape)
    this.constants.push({ tensor: t, data })
    return t
  }

  /** A scalar constant of the given float type. */
  scalar(value: number, dtype: DType = "float32"): Tensor {
    return this.constant(dtype === "float64" ? Float64Array.of(value) : Float32Array.of(value), [], dtype)
  }

  ints(values: ReadonlyArray<number>): Tensor {
    return this.constant(BigInt64Array.from(values, (v) => BigInt(v)), [values.length], "int64")
  }

  /** Adds a node; used by ops.ts. */
  node(op: string, inputs: ReadonlyArray<Tensor>, dtype: DType, shape: Shape, attrs: OpNode["attrs"] = {}): Tensor {
    for (const i of inputs) {
      if (i.graph !== this) {
        throw new GraphError({ graph: this.name, message: `${this.name}: ${op} mixes tensors of two graphs` })
      }
    }
    const node: { -readonly [K in keyof OpNode]: OpNode[K] } = { op, inputs, attrs, output: undefined as never }
    node.output = this.tensor(dtype, shape, node)
    this.nodes.push(node)
    return node.output
  }

  output(name: string, tensor: Tensor): void {
    if (this.outputs.some((o) => o.name === name)) {
      throw new GraphError({ graph: this.name, message: `${this.name}: duplicate output "${name}"` })
    }
    this.outputs.push({ name, tensor })
  }
}
