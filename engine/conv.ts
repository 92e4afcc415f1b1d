/**
 * 2-D convolution and its transpose (ONNX Conv / ConvTranspose, NCHW, dilation 1 in the forward pass)
 * with their backward rules. The two are each other's adjoints, so each gradient is the other op, and
 * both weight gradients are one correlation of the input with the output gradient:
 *
 *   dW[m, c, i, j] = Σ_{n,y,x} G[n, m, y, x] · X̃[n, c, y·s + i, x·s + j]   (X̃: X zero-padded)
 *
 * computed for stride 1 and one group as a GEMM per kernel tap, otherwise as a Conv of Xᵀ (channels as batch)
 * with Gᵀ as its kernel, dilated by the stride (the formulation of cuDNN's and PyTorch's `conv2d_weight`),
 * per group.
 */
import type { Dim, OpNode, Tensor } from "./graph.ts"
import { GraphError } from "./graph.ts"
import * as op from "./ops.ts"

export interface ConvAttrs {
  readonly strides: readonly [number, number]
  /** [top, left, bottom, right] zero padding. */
  readonly pads: readonly [number, number, number, number]
  readonly group: number
}

const fail = (t: Tensor, message: string): never => {
  throw new GraphError({ graph: t.graph.name, message: `${t.graph.name}: ${message}` })
}

const staticDims = (t: Tensor, what: string): Array<number> =>
  t.shape.map((d, i) =>
    typeof d === "number" ? d : i === 0 ? 0 : fail(t, `${what} needs static sizes past the batch, got [${t.shape}]`)
  )

const attrsOf = (node: OpNode): ConvAttrs => {
  const s = node.attrs.strides as ReadonlyArray<number>
  const p = node.attrs.pads as ReadonlyArray<number>
  return { strides: [s[0], s[1]], pads: [p[0], p[1], p[2], p[3]], group: node.attrs.group as number }
}

const convNode = (x: Tensor, w: Tensor, a: ConvAttrs, dilations: readonly [number, number], out: ReadonlyArray<Dim>) =>
  x.graph.node("Conv", [x, w], x.dtype, out, {
    kernel_shape: w.shape.slice(2) as Array<number>,
    strides: [...a.strides],
    pads: [...a.pads],
    dilations: [...dilations],
    group: a.group
  })

/** y = X ⋆ W: x [N, C, H, W], w [M, C/group, kh, kw] → [N, M, H', W'], H' = ⌊(H + pt + pb − kh)/s⌋ + 1. */
export const conv2d = (x: Tensor, w: Tensor, a: ConvAttrs): Tensor => {
  const [, C, H, W] = staticDims(x, "Conv")
  const [M, Cg, kh, kw] = staticDims(w, "Conv")
  if (x.rank !== 4 || w.rank !== 4) fail(x, `Conv needs NCHW input and weight, got [${x.shape}] and [${w.shape}]`)
  if (Cg * a.group !== C || M % a.group !== 0) {
    fail(x, `Conv of [${x.shape}] with weight [${w.shape}] in ${a.group} groups: channels do not match`)
  }
  const ho = Math.floor((H + a.pads[0] + a.pads[2] - kh) / a.strides[0]) + 1
  const wo = Math.floor((W + a.pads[1] + a.pads[3] - kw) / a.strides[1]) + 1
  if (ho < 1 || wo < 1) fail(x, `Conv kernel [${kh}, ${kw}] is larger than the padded input [${H}, ${W}]`)
  return convNode(x, w, a, [1, 1], [x.shape[0], M, ho, wo])
}

/**
 * The adjoint of conv2d: x [N, C, H, W], w [C, M/group, kh, kw] → [N, M, H', W'] with
 * H' = s(H − 1) + op + kh − pt − pb (`outputPadding` op < s fixes the size a strided Conv left ambiguous).
 */
export const convTranspose2d = (
  x: Tensor,
  w: Tensor,
  a: ConvAttrs,
  outputPadding: readonly [number, number] = [0, 0]
): Tensor => {
  const [, C, H, W] = staticDims(x, "ConvTranspose")
  const [Cw, Mg, kh, kw] = staticDims(w, "ConvTranspose")
  if (Cw !== C || C % a.group !== 0) {
    fail(x, `ConvTranspose of [${x.shape}] with weight [${w.shape}] in ${a.group} groups: channels do not match`)
  }
  const ho = a.strides[0] * (H - 1) + outputPadding[0] + kh - a.pads[0] - a.pads[2]
  const wo = a.strides[1] * (W - 1) + outputPadding[1] + kw - a.pads[1] - a.pads[3]
  return x.graph.node("ConvTranspose", [x, w], x.dtype, [x.shape[0], Mg * a.group, ho, wo], {
    kernel_shape: [kh, kw],
    strides: [...a.strides],
    pads: [...a.pads],
    output_padding: [...outputPadding],
    group: a.group
  })
}

/**
 * dW of a stride-1, one-group conv as one GEMM per kernel tap: Gᵀ [M, N·H'·W'] times the input shifted by
 * that tap [N·H'·W', C] (im2col without the big patch matrix): onnxruntime's Conv runs the dilated
 * correlation's [N·H'·W']-long kernels far below its GEMM speed (an `arch=unet` training step of 64 took
 * 0.41 s with it, 0.29 s with this and the broadcast upsampling).
 */
const tapWeightGradient = (x: Tensor, g: Tensor, kernel: readonly [number, number], a: ConvAttrs): Tensor => {
  const [, C] = staticDims(x, "Conv's weight gradient")
  const [, M, ho, wo] = staticDims(g, "Conv's weight gradient")
  const [kh, kw] = kernel
  const N = x.shape[0]
  const rows = typeof N === "number" ? N * ho * wo : `${N}·${ho * wo}`
  const nhwc = op.transpose(op.pad(op.pad(x, 2, a.pads[0], a.pads[2]), 3, a.pads[1], a.pads[3]), [0, 2, 3, 1])
  const gt = op.reshape(op.transpose(g, [0, 2, 3, 1]), [-1, M], [rows, M])
  const taps: Array<Tensor> = []
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const shifted = op.reshape(op.slice(op.slice(nhwc, 1, i, i + ho), 2, j, j + wo), [-1, C], [rows, C])
      taps.push(op.unsqueeze(op.gemm(gt, shifted, true, false), [2]))
    }
  }
  return op.reshape(taps.length === 1 ? taps[0] : op.concat(taps, 2), [M, C, kh, kw])
}

/** dW of y = X ⋆ W (see the header): x [N, C, H, W], g [N, M, H', W'] → [M, C/group, kh, kw]. */
const weightGradient = (x: Tensor, g: Tensor, kernel: readonly [number, number], a: ConvAttrs): Tensor => {
  if (a.group === 1 && a.strides[0] === 1 && a.strides[1] === 1) return tapWeightGradient(x, g, kernel, a)
  const [, C] = staticDims(x, "Conv's weight gradient")
  const [, M, ho, wo] = staticDims(g, "Conv's weight gradient")
  const [Cg, Mg] = [C / a.group, M / a.group]
  const [H, W] = [x.shape[2] as number, x.shape[3] as number]
  const extent = [
    H + a.pads[0] + a.pads[2] - a.strides[0] * (ho - 1),
    W + a.pads[1] + a.pads[3] - a.strides[1] * (wo - 1)
  ]
  const perGroup = Array.from({ length: a.group }, (_, k) => {
    const xk = a.group === 1 ? x : op.slice(x, 1, k * Cg, (k + 1) * Cg)
    const gk = a.group === 1 ? g : op.slice(g, 1, k * Mg, (k + 1) * Mg)
    const xt = op.transpose(xk, [1, 0, 2, 3])
    const gt = op.transpose(gk, [1, 0, 2, 3])
    const full = convNode(xt, gt, { strides: [1, 1], pads: a.pads, group: 1 }, a.strides, [Cg, Mg, ...extent])
    // The dilated correlation reaches up to s − 1 rows past the kernel where the strided conv's floor
    // dropped them: only the first kh × kw are the weight's.
    const cut = op.slice(op.slice(full, 2, 0, kernel[0]), 3, 0, kernel[1])
    return op.transpose(cut, [1, 0, 2, 3])
  })
  return perGroup.length === 1 ? perGroup[0] : op.concat(perGroup, 0)
}

type Rule = (node: OpNode, g: Tensor) => ReadonlyArray<Tensor | undefined>

export const CONV_RULES: Readonly<Record<string, Rule>> = {
  Conv: (node, g) => {
    const [x, w] = node.inputs
    const a = attrsOf(node)
    const kernel = [w.shape[2] as number, w.shape[3] as number] as const
    const [H, W] = [x.shape[2] as number, x.shape[3] as number]
    const [ho, wo] = [g.shape[2] as number, g.shape[3] as number]
    const outputPadding = [
      H - (a.strides[0] * (ho - 1) + kernel[0] - a.pads[0] - a.pads[2]),
      W - (a.strides[1] * (wo - 1) + kernel[1] - a.pads[1] - a.pads[3])
    ] as const
    return [convTranspose2d(g, w, a, outputPadding), weightGradient(x, g, kernel, a)]
  },
  ConvTranspose: (node, g) => {
    const [x, w] = node.inputs
    const a = attrsOf(node)
    // y = Wᵀ-conv(x) is the adjoint of the conv g ↦ x with the same weight: its gradients swap roles.
    return [conv2d(g, w, a), weightGradient(g, x, [w.shape[2] as number, w.shape[3] as number], a)]
  }
}
