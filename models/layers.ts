/**
 * The layers etaflow's convolutional and transformer bases are built from (models/unet.ts,
 * models/dit.ts), as parameter specs plus forward functions on graph tensors. Norm affines and
 * adaLN modulations are written as (1 + γ)·y + β with γ, β zero-initialised (DiT's adaLN-Zero
 * convention), so every parameter has ParamSpec's zero-or-normal init.
 */
import { conv2d } from "../engine/conv.ts"
import type { Graph, Tensor } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import type { ParamSpec } from "../engine/params.ts"

export type Params = Record<string, Tensor>

/** x·W + b with W [in, out] (the MLP's layout). */
export const linearSpecs = (name: string, fanIn: number, fanOut: number, zero = false): Array<ParamSpec> => [
  { name: `${name}.w`, shape: [fanIn, fanOut], init: zero ? "zeros" : { std: 1 / Math.sqrt(fanIn) } },
  { name: `${name}.b`, shape: [fanOut], init: "zeros" }
]
export const linear = (p: Params, name: string, x: Tensor): Tensor =>
  op.add(op.matmul(x, p[`${name}.w`]), p[`${name}.b`])

/** A k×k convolution W [out, in, k, k] + b, PyTorch's layout. */
export const convSpecs = (name: string, cin: number, cout: number, k: number, zero = false): Array<ParamSpec> => [
  { name: `${name}.weight`, shape: [cout, cin, k, k], init: zero ? "zeros" : { std: 1 / Math.sqrt(cin * k * k) } },
  { name: `${name}.bias`, shape: [cout], init: "zeros" }
]
export const conv = (p: Params, name: string, x: Tensor, stride = 1): Tensor => {
  const w = p[`${name}.weight`]
  const k = w.shape[2] as number
  const pad = Math.floor((k - 1) / 2) * (stride === k ? 0 : 1)
  const y = conv2d(x, w, { strides: [stride, stride], pads: [pad, pad, pad, pad], group: 1 })
  return op.add(y, op.reshape(p[`${name}.bias`], [1, w.shape[0] as number, 1, 1]))
}

export const groupNormSpecs = (name: string, channels: number): Array<ParamSpec> => [
  { name: `${name}.gamma`, shape: [channels], init: "zeros" },
  { name: `${name}.beta`, shape: [channels], init: "zeros" }
]
/** GroupNorm over x [B, C, H, W] in `groups` groups, affine (1 + γ)·y + β per channel. */
export const groupNorm = (p: Params, name: string, x: Tensor, groups: number): Tensor => {
  const [C, H, W] = x.shape.slice(1) as Array<number>
  const y = op.reshape(
    op.normalize(
      op.reshape(x, [-1, groups, (C / groups) * H * W], [x.shape[0], groups, (C / groups) * H * W]),
      [2],
      1e-5
    ),
    [-1, C, H, W],
    x.shape
  )
  const per = (t: Tensor) => op.reshape(t, [1, C, 1, 1])
  return op.add(op.mul(y, op.add(per(p[`${name}.gamma`]), 1)), per(p[`${name}.beta`]))
}

/** Sinusoidal features of 1000·t (t [B] → [B, F]), the MLP base's time features. */
export const timeFeatures = (g: Graph, t: Tensor, F: number): Tensor => {
  const half = F / 2
  const freqs = Float32Array.from({ length: half }, (_, k) => Math.exp((-Math.log(10_000) * k) / half))
  const angles = op.mul(op.unsqueeze(op.mul(t, 1000), [1]), g.constant(freqs, [1, half]))
  return op.concat([op.sin(angles), op.cos(angles)], 1)
}

/** The conditioning vector e = MLP(φ(t)) + E[c] (E with a learned null row at index `classes`). */
export const embeddingSpecs = (F: number, E: number, classes: number): Array<ParamSpec> => [
  ...linearSpecs("time.fc1", F, E),
  ...linearSpecs("time.fc2", E, E),
  ...(classes > 0 ? [{ name: "class.embedding", shape: [classes + 1, E], init: { std: 1 } } satisfies ParamSpec] : [])
]
export const embedding = (g: Graph, p: Params, t: Tensor, c: Tensor | undefined, F: number, classes: number) => {
  const e = linear(p, "time.fc2", op.silu(linear(p, "time.fc1", timeFeatures(g, t, F))))
  if (classes === 0) return e
  if (c === undefined) throw new Error("a conditional network needs class indices")
  return op.add(e, op.gather(p["class.embedding"], c))
}

/** Which weights LoRA may adapt: matrices [in, out] (output axis 1) and convolutions [out, …] (axis 0). */
export const adaptableOf = (specs: ReadonlyArray<ParamSpec>): Record<string, { readonly outAxis: 0 | 1 }> =>
  Object.fromEntries(
    specs.flatMap((s): Array<[string, { readonly outAxis: 0 | 1 }]> =>
      s.name.endsWith(".w") && s.shape.length === 2
        ? [[s.name, { outAxis: 1 }]]
        : s.name.endsWith(".weight") && s.shape.length === 4
        ? [[s.name, { outAxis: 0 }]]
        : []
    )
  )
