/** `op.stopGradient`: the value passes, the gradient does not (PyTorch's detach). */
import { describe, expect, it } from "vitest"
import { grad } from "../../engine/autodiff.ts"
import { Graph } from "../../engine/graph.ts"
import * as op from "../../engine/ops.ts"
import { EngineSession } from "../../engine/session.ts"

describe("stopGradient", () => {
  it("passes its value forward and no gradient back: d/dx Σ x·sg(x)² = sg(x)², not 3x²", async () => {
    const g = new Graph("stop-gradient")
    const x = g.input("x", "float64", [3])
    const y = op.reduceSum(op.mul(x, op.square(op.stopGradient(x))), [0])
    const [dx] = grad(y, [x])
    g.output("y", y)
    g.output("dx", dx!)
    const session = await EngineSession.create(g, { threads: 1 })
    const xs = Float64Array.of(0.5, -2, 3)
    const res = await session.run({ x: { data: xs, dims: [3] } })
    await session.release()
    expect(Number(res.y.data[0])).toBeCloseTo(0.125 - 8 + 27, 12)
    expect(Array.from(res.dx.data as Float64Array)).toEqual(Array.from(xs, (v) => v * v))
  })
})
