/**
 * Conv and ConvTranspose: shapes against PyTorch's formulas, and both gradients against finite
 * differences. The ops are bilinear, so a central difference with a unit step is exact up to float32
 * rounding of a sum of ~100 terms (tolerance 1e-4 of the largest gradient entry); onnxruntime has no
 * float64 Conv on CPU.
 */
import { describe, expect, it } from "vitest"
import { conv2d, type ConvAttrs, convTranspose2d } from "../../engine/conv.ts"
import type { Tensor } from "../../engine/graph.ts"
import * as op from "../../engine/ops.ts"
import { checkGradient } from "../support/gradient-check.ts"

const F32 = { dtype: "float32", h: 1 } as const
const attrs = (s: number, p: number, group = 1): ConvAttrs => ({ strides: [s, s], pads: [p, p, p, p], group })

describe("Conv and ConvTranspose gradients match finite differences", () => {
  it.each(
    [
      ["a 3×3 conv with padding 1", [2, 3, 5, 5], [4, 3, 3, 3], attrs(1, 1)],
      ["a strided 3×3 conv whose last row the stride drops", [2, 2, 6, 6], [3, 2, 3, 3], attrs(2, 1)],
      ["a patch embedding (kernel = stride = 2, no padding)", [1, 2, 4, 4], [3, 2, 2, 2], attrs(2, 0)],
      ["a grouped conv (2 groups)", [2, 4, 4, 4], [6, 2, 3, 3], attrs(1, 1, 2)],
      ["an asymmetric padding", [1, 2, 4, 5], [2, 2, 3, 2], { strides: [1, 2], pads: [0, 1, 2, 0], group: 1 }]
    ] as const
  )("%s", async (name, xs, ws, a) => {
    await checkGradient(name, [{ shape: xs }, { shape: ws }], ([x, w]: Array<Tensor>) => conv2d(x, w, a), 1e-4, F32)
  })

  it.each(
    [
      ["a stride-2 upsampling (kernel 4, padding 1)", [2, 3, 3, 3], [3, 2, 4, 4], attrs(2, 1), [0, 0]],
      ["a stride-2 transpose with output padding", [1, 2, 3, 3], [2, 3, 3, 3], attrs(2, 1), [1, 1]],
      ["a grouped transpose", [1, 4, 3, 3], [4, 1, 3, 3], attrs(1, 1, 2), [0, 0]]
    ] as const
  )("%s", async (name, xs, ws, a, outPad) => {
    await checkGradient(
      name,
      [{ shape: xs }, { shape: ws }],
      ([x, w]: Array<Tensor>) => convTranspose2d(x, w, a, outPad),
      1e-4,
      F32
    )
  })

  it("over a symbolic batch", async () => {
    await checkGradient(
      "symbolic batch",
      [{ shape: [3, 2, 5, 5], symbolic: ["B", 2, 5, 5] }, { shape: [2, 2, 3, 3] }],
      ([x, w]: Array<Tensor>) => op.silu(conv2d(x, w, attrs(2, 1))),
      1e-3,
      { dtype: "float32", h: 1e-2 }
    )
  })

  it("Erf (the exact GELU's) matches to float32 finite-difference accuracy", async () => {
    await checkGradient("Erf", [{ shape: [3, 4] }], ([x]: Array<Tensor>) => op.erf(x), 1e-3, {
      dtype: "float32",
      h: 1e-2
    })
  })
})

describe("shapes", () => {
  it("follow PyTorch's output-size formulas", async () => {
    const { Graph } = await import("../../engine/graph.ts")
    const g = new Graph("shapes")
    const x = g.input("x", "float32", ["B", 3, 7, 7])
    expect(conv2d(x, g.input("w", "float32", [8, 3, 3, 3]), attrs(2, 1)).shape).toEqual(["B", 8, 4, 4])
    const up = g.input("u", "float32", [3, 5, 4, 4])
    expect(convTranspose2d(x, up, attrs(2, 1)).shape).toEqual(["B", 5, 14, 14])
    expect(() => conv2d(x, g.input("bad", "float32", [8, 2, 3, 3]), attrs(1, 1))).toThrow(/channels do not match/)
  })
})
