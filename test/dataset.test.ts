import { createRequire } from "node:module"
import { describe, expect, it } from "vitest"
import { latentsToPixels, loadMnist } from "../data/mnist.ts"
import { sampleToy, TOYS } from "../data/toys.ts"
import { openStream } from "../random/streams.ts"

describe("data sets", () => {
  it("MNIST has 10,000 digits in [0, 1] with a fixed stratified split", () => {
    const m = loadMnist(0.2)
    expect(m.count).toBe(10_000)
    expect(m.x.length).toBe(10_000 * 784)
    expect(Math.min(...m.x.subarray(0, 784 * 50))).toBeGreaterThanOrEqual(0)
    expect(Math.max(...m.x.subarray(0, 784 * 50))).toBeLessThanOrEqual(1)
    for (let d = 0; d < 10; d++) {
      const rows = Array.from(m.label.keys()).filter((i) => m.label[i] === d)
      const test = rows.filter((i) => m.split[i] === "test").length
      expect(test).toBe(Math.floor(rows.length * 0.2))
    }
    expect(loadMnist(0.2).split).toEqual(m.split)
  })

  it("MNIST's pixels are the package's own, image by image (its `get`, a second reader of its files)", () => {
    const m = loadMnist(0.2)
    const digits = createRequire(import.meta.url)("mnist") as Record<number, { get: (i: number) => Array<number> }>
    const firstRow = (d: number) => Array.from(m.label.keys()).find((i) => m.label[i] === d)!
    for (const [d, i] of [[0, 0], [3, 17], [9, 500]] as const) {
      const row = firstRow(d) + i
      // float32 storage of the package's float64 pixels: compared after the same rounding.
      expect(Array.from(m.x.subarray(row * 784, (row + 1) * 784))).toEqual(digits[d].get(i).map(Math.fround))
    }
  })

  it("latents map to pixels in [0, 1] as (x + 1) / 2, clamped, batch by batch", () => {
    const x = Float32Array.of(-1, 1, 0, -1.5, 2, 0.25, Number.NaN)
    // Hand-computed: −1 → 0, 1 → 1, 0 → 0.5, clamped at both ends, 0.25 → 0.625, NaN stays NaN.
    expect(Array.from(latentsToPixels(x))).toEqual([0, 1, 0.5, 0, 1, 0.625, Number.NaN])
  })

  it("the double ring puts equal mass on radius 1 and radius 2, exactly on the circles", () => {
    const n = 20_000
    const { x, label } = sampleToy("double-ring", n, openStream(["ring"]))
    let outer = 0
    for (let i = 0; i < n; i++) {
      const r = Math.hypot(x[2 * i], x[2 * i + 1])
      expect(Math.abs(r - (label[i] + 1))).toBeLessThan(1e-6)
      outer += label[i]
    }
    expect(Math.abs(outer / n - 0.5)).toBeLessThan(5 * Math.sqrt(0.25 / n))
  })

  it.each(TOYS)("%s is reproducible from its seed", (toy) => {
    const a = sampleToy(toy, 100, openStream(["toy", toy]))
    const b = sampleToy(toy, 100, openStream(["toy", toy]))
    expect(Array.from(a.x)).toEqual(Array.from(b.x))
    expect(a.x.every(Number.isFinite)).toBe(true)
  })
})
