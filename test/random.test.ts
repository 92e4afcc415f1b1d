import { describe, expect, it } from "vitest"
import { openStream, permutation } from "../random/streams.ts"

describe("random streams", () => {
  it("give the same numbers for the same key and different numbers for another key", () => {
    const a = openStream([0, "init", 1]).fillNormal(new Float64Array(64))
    const b = openStream([0, "init", 1]).fillNormal(new Float64Array(64))
    const c = openStream([0, "init", 2]).fillNormal(new Float64Array(64))
    expect(Array.from(a)).toEqual(Array.from(b))
    expect(Array.from(a)).not.toEqual(Array.from(c))
  })

  it("do not depend on how many other streams are open (batch invariance)", () => {
    const alone = openStream([5, "chain", 0]).fillNormal(new Float64Array(10))
    const many = Array.from({ length: 1000 }, (_, j) => openStream([5, "chain", j]).fillNormal(new Float64Array(10)))
    expect(Array.from(many[0])).toEqual(Array.from(alone))
  })

  it("do not confuse string and number key parts", () => {
    expect(openStream(["1"]).uniform()).not.toBe(openStream([1]).uniform())
  })

  it("draw standard normals: mean 0, variance 1, within Monte-Carlo error", () => {
    const n = 200_000
    const x = openStream(["moments"]).fillNormal(new Float64Array(n))
    const mean = x.reduce((a, b) => a + b, 0) / n
    const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)
    const kurtosis = x.reduce((a, b) => a + (b - mean) ** 4, 0) / n / variance ** 2
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(n))
    expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / n))
    expect(Math.abs(kurtosis - 3)).toBeLessThan(5 * Math.sqrt(24 / n))
  })

  it("permute every index exactly once", () => {
    const p = permutation(openStream(["perm"]), 1000)
    expect(Array.from(p).sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
  })
})
