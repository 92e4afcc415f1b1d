/**
 * Backward rules against central finite differences. A random cotangent R makes the loss Σ R ⊙ f(x)
 * exercise every output; errors are relative to the largest gradient entry of each argument.
 */
import { expect } from "vitest"
import { grad } from "../../engine/autodiff.ts"
import { type DType, Graph, type Shape, type Tensor } from "../../engine/graph.ts"
import * as op from "../../engine/ops.ts"
import { EngineSession } from "../../engine/session.ts"
import { openStream } from "../../random/streams.ts"

export interface Arg {
  readonly shape: ReadonlyArray<number>
  /** Symbolic shape declared in the graph (defaults to the concrete one). */
  readonly symbolic?: Shape
  readonly positive?: boolean
}

export const checkGradient = async (
  name: string,
  args: ReadonlyArray<Arg>,
  f: (xs: Array<Tensor>, g: Graph) => Tensor,
  tolerance = 1e-6,
  /** float32 for ops onnxruntime's CPU kernels have only in float32 (Conv, ConvTranspose, Erf). */
  precision: { readonly dtype: DType; readonly h: number } = { dtype: "float64", h: 1e-6 }
) => {
  const fill = (n: number, draw: () => number) =>
    precision.dtype === "float32" ? Float32Array.from({ length: n }, draw) : Float64Array.from({ length: n }, draw)
  const rng = openStream(["fd", name])
  const g = new Graph(name)
  const xs = args.map((a, i) => g.input(`x${i}`, precision.dtype, a.symbolic ?? a.shape))
  const y = f(xs, g)
  const concrete = (t: Tensor, fallback: ReadonlyArray<number>) =>
    t.shape.map((d, i) => (typeof d === "number" ? d : fallback[i]))
  const yShape = concrete(y, args[0].shape)
  const r = g.input("r", precision.dtype, y.shape)
  const loss = op.reduceSum(op.mul(y, r), y.shape.map((_, i) => i))
  const grads = grad(loss, xs)
  g.output("loss", loss)
  grads.forEach((gi, i) => g.output(`g${i}`, gi!))
  const session = await EngineSession.create(g, { threads: 1 })
  const values = args.map((a) =>
    fill(a.shape.reduce((p, q) => p * q, 1), () => (a.positive ? 0.5 + rng.uniform() : rng.normal()))
  )
  const rv = fill(yShape.reduce((p, q) => p * q, 1), () => rng.normal())
  const feeds = (vals: Array<Float32Array | Float64Array>) => ({
    ...Object.fromEntries(vals.map((v, i) => [`x${i}`, { data: v, dims: args[i].shape }])),
    r: { data: rv, dims: yShape }
  })
  const out = await session.run(feeds(values))
  for (let i = 0; i < args.length; i++) {
    const analytic = out[`g${i}`].data as Float32Array | Float64Array
    const scale = Math.max(1e-3, ...Array.from(analytic, Math.abs))
    for (let k = 0; k < values[i].length; k++) {
      const h = precision.h
      const plus = values.map((v) => v.slice())
      const minus = values.map((v) => v.slice())
      plus[i][k] += h
      minus[i][k] -= h
      const lp = (await session.run(feeds(plus))).loss.data[0] as number
      const lm = (await session.run(feeds(minus))).loss.data[0] as number
      // The step as stored: in float32, x ± h rounds.
      const numeric = (lp - lm) / (plus[i][k] - minus[i][k])
      expect(
        Math.abs(numeric - analytic[k]) / scale,
        `${name}: ∂/∂x${i}[${k}] analytic ${analytic[k]} numeric ${numeric}`
      ).toBeLessThan(tolerance)
    }
  }
}
