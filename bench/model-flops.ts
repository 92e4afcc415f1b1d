/**
 * Necessary FLOPs of one forward row of a velocity network, counted from its graph: 2 × the
 * multiply-adds of every matrix product and convolution (elementwise ops are not counted, as for the
 * MLP's closed form in rl.ts, which this count reproduces).
 */
import { Graph, type OpNode } from "../engine/graph.ts"
import { velocityNet, type VelocityNetConfig } from "../models/velocity-net.ts"

const size = (dims: ReadonlyArray<number | string>) => dims.reduce<number>((a, d) => a * (d as number), 1)

const macs = (node: OpNode): number => {
  const [a, w] = node.inputs
  switch (node.op) {
    case "MatMul":
      return size(node.output.shape) * (a.shape[a.rank - 1] as number)
    case "Gemm":
      return size(node.output.shape) * (a.shape[node.attrs.transA === 1 ? 0 : 1] as number)
    case "Conv":
      return size(node.output.shape) * size(w.shape.slice(1))
    case "ConvTranspose":
      return size(a.shape) * size(w.shape.slice(1))
    default:
      return 0
  }
}

/** FLOPs of f(x, t, c) for one latent (batch 1, every shape static). */
export const forwardFlops = (net: VelocityNetConfig): number => {
  const model = velocityNet(net)
  const g = new Graph("flops")
  const p = Object.fromEntries(model.specs.map((s) => [s.name, g.input(s.name, "float32", s.shape)]))
  const c = net.classes > 0 ? g.input("c", "int64", [1]) : undefined
  model.forward(g, p, g.input("x", "float32", [1, net.dim]), g.input("t", "float32", [1]), c)
  return 2 * g.nodes.reduce((n, node) => n + macs(node), 0)
}
