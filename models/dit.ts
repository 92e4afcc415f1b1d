/**
 * etaflow's small DiT (`arch=dit`, arXiv:2212.09748): 4×4 patches of the 28×28 latent as 49 tokens with
 * a learned position embedding, transformer blocks with adaLN-Zero conditioning (shift, scale and gate of
 * attention and MLP regressed from the time/class vector e, the gates zero-initialised so each block
 * starts as the identity), and a final adaLN + linear layer back to patches (zero-initialised: f = 0).
 */
import type { Tensor } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import type { ParamSpec } from "../engine/params.ts"
import { adaptableOf, conv, convSpecs, embedding, embeddingSpecs, linear, linearSpecs, type Params } from "./layers.ts"
import { guidance, type VelocityNet } from "./networks.ts"

export interface DiTConfig {
  readonly arch: "dit"
  readonly dim: number
  readonly side: number
  readonly patch: number
  readonly width: number
  readonly depth: number
  readonly heads: number
  readonly timeFeatures: number
  readonly classes: number
}

/** x [B, N, D] → (1 + scale)·x + shift with shift, scale [B, D]. */
const modulate = (x: Tensor, shift: Tensor, scale: Tensor) =>
  op.add(op.mul(x, op.add(op.unsqueeze(scale, [1]), 1)), op.unsqueeze(shift, [1]))

/** The k-th of n equal chunks of the last axis. */
const chunk = (x: Tensor, k: number, n: number) => {
  const w = (x.shape[x.rank - 1] as number) / n
  return op.slice(x, -1, k * w, (k + 1) * w)
}

/** Multi-head self-attention over tokens x [B, N, D]. */
const attention = (p: Params, name: string, x: Tensor, heads: number): Tensor => {
  const [B, N, D] = x.shape as [Tensor["shape"][number], number, number]
  const dh = D / heads
  const qkv = linear(p, `${name}.qkv`, x)
  // [B, N, D] → [B, heads, N, dh]
  const split = (k: number) =>
    op.transpose(op.reshape(chunk(qkv, k, 3), [-1, N, heads, dh], [B, N, heads, dh]), [0, 2, 1, 3])
  const [q, kk, v] = [split(0), split(1), split(2)]
  const a = op.softmax(op.mul(op.matmul(q, op.transpose(kk, [0, 1, 3, 2])), 1 / Math.sqrt(dh)), -1)
  const y = op.reshape(op.transpose(op.matmul(a, v), [0, 2, 1, 3]), [-1, N, D], [B, N, D])
  return linear(p, `${name}.proj`, y)
}

const blockSpecs = (name: string, D: number): Array<ParamSpec> => [
  ...linearSpecs(`${name}.attn.qkv`, D, 3 * D),
  ...linearSpecs(`${name}.attn.proj`, D, D),
  ...linearSpecs(`${name}.mlp.fc1`, D, 4 * D),
  ...linearSpecs(`${name}.mlp.fc2`, 4 * D, D),
  ...linearSpecs(`${name}.ada`, D, 6 * D, true)
]

const block = (p: Params, name: string, x: Tensor, e: Tensor, heads: number): Tensor => {
  const ada = linear(p, `${name}.ada`, e)
  const m = (k: number) => chunk(ada, k, 6)
  const D = x.shape[2] as number
  const norm = (h: Tensor) => op.normalize(h, [2], 1e-6)
  const attn = attention(p, `${name}.attn`, modulate(norm(x), m(0), m(1)), heads)
  let h = op.add(x, op.mul(op.unsqueeze(m(2), [1]), attn))
  const mlp = linear(p, `${name}.mlp.fc2`, op.gelu(linear(p, `${name}.mlp.fc1`, modulate(norm(h), m(3), m(4)))))
  h = op.add(h, op.mul(op.unsqueeze(m(5), [1]), mlp))
  return op.reshape(h, [-1, x.shape[1] as number, D], x.shape)
}

export const ditNet = (cfg: DiTConfig): VelocityNet<DiTConfig> => {
  const { width: D, patch: P, side, classes, timeFeatures: F } = cfg
  const n = side / P
  const specs: Array<ParamSpec> = [
    ...embeddingSpecs(F, D, classes),
    ...convSpecs("embed", 1, D, P),
    { name: "pos", shape: [1, n * n, D], init: { std: 0.02 } },
    ...Array.from({ length: cfg.depth }, (_, i) => blockSpecs(`block${i}`, D)).flat(),
    ...linearSpecs("final.ada", D, 2 * D, true),
    ...linearSpecs("final.out", D, P * P, true)
  ]
  const forward: VelocityNet["forward"] = (g, p, x, t, c) => {
    const B = x.shape[0]
    const e = op.silu(embedding(g, p, t, c, F, classes))
    const patches = conv(p, "embed", op.reshape(x, [-1, 1, side, side], [B, 1, side, side]), P)
    let h = op.add(op.transpose(op.reshape(patches, [-1, D, n * n], [B, D, n * n]), [0, 2, 1]), p.pos)
    for (let i = 0; i < cfg.depth; i++) h = block(p, `block${i}`, h, e, cfg.heads)
    const ada = linear(p, "final.ada", e)
    const out = linear(p, "final.out", modulate(op.normalize(h, [2], 1e-6), chunk(ada, 0, 2), chunk(ada, 1, 2)))
    // Tokens [B, n·n, P·P] back to the image [B, n, P, n, P] → [B, dim].
    const image = op.transpose(op.reshape(out, [-1, n, n, P, P], [B, n, n, P, P]), [0, 1, 3, 2, 4])
    return op.reshape(image, [-1, cfg.dim], [B, cfg.dim])
  }
  return { specs, forward, guided: guidance(forward, classes), adaptable: adaptableOf(specs), config: cfg }
}
