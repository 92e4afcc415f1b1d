import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64"
import { xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus"
import { describe, expect, it } from "vitest"
import { prefetchNormals } from "../random/prefetch.ts"
import { openStream, permutation, stateOf } from "../random/streams.ts"
import { callingThreadNice, threadNices } from "./support/threads.ts"

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

  it("draw pure-rand's xoroshiro128+ uniforms bit for bit (the inlined generator is the library's)", () => {
    for (const key of [["a"], [7, "step", 3], ["uniform", 0]]) {
      const reference = xoroshiro128plusFromState(stateOf(key))
      const stream = openStream(key)
      for (let i = 0; i < 100_000; i++) expect(stream.uniform()).toBe(uniformFloat64(reference))
    }
  })

  it("fill arrays with the same normals as drawing them one by one (the fast loop is the ziggurat's)", () => {
    for (const key of [["fill"], [3, "step", 9]]) {
      const one = openStream(key)
      const filled = openStream(key).fillNormal(new Float64Array(300_000))
      for (let i = 0; i < filled.length; i++) if (filled[i] !== one.normal()) expect.fail(`draw ${i} differs`)
      // Both streams continue from the same state.
      expect(openStream(key).fillNormal(new Float64Array(300_001))[300_000]).toBe(one.normal())
    }
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

  it(
    "draw standard normals that pass Kolmogorov–Smirnov, χ² in 100 bins and a test of the tail beyond the ziggurat's R",
    () => {
      // Φ through erfc (Numerical Recipes' erfcc, fractional error < 1.2e-7: far below the KS bound).
      const erfc = (x: number) => {
        const z = Math.abs(x)
        const t = 1 / (1 + 0.5 * z)
        const r = t *
          Math.exp(
            -z * z - 1.26551223 +
              t *
                (1.00002368 +
                  t *
                    (0.37409196 +
                      t *
                        (0.09678418 +
                          t *
                            (-0.18628806 +
                              t *
                                (0.27886807 +
                                  t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
          )
        return x >= 0 ? r : 2 - r
      }
      const cdf = (x: number) => 0.5 * erfc(-x / Math.SQRT2)
      const n = 200_000
      const x = openStream(["ks"]).fillNormal(new Float64Array(n)).sort()
      let d = 0
      for (let i = 0; i < n; i++) d = Math.max(d, Math.abs(cdf(x[i]) - i / n), Math.abs(cdf(x[i]) - (i + 1) / n))
      expect(d).toBeLessThan(1.95 / Math.sqrt(n)) // α = 0.001
      // A χ² test over 100 equiprobable bins (the ziggurat's wedges are thin, so bin by bin), and a KS
      // test of the tail beyond R = 3.4426 against the truncated normal.
      const m = 2_000_000
      const y = openStream(["chi2"]).fillNormal(new Float64Array(m))
      const bins = 100
      const counts = new Float64Array(bins)
      for (const v of y) counts[Math.min(bins - 1, Math.floor(cdf(v) * bins))]++
      const chi2 = counts.reduce((acc, c) => acc + (c - m / bins) ** 2 / (m / bins), 0)
      expect(chi2).toBeLessThan(148) // χ²(99) at α = 0.001
      const tailStart = 3.442619855899
      // The tail is sampled by rejection: 20 million draws give ~11,500 tail values to test it with.
      const tailDraws = 20_000_000
      const stream = openStream(["tail"])
      const chunk = new Float64Array(1_000_000)
      const kept: Array<number> = []
      for (let c = 0; c < tailDraws / chunk.length; c++) {
        for (const v of stream.fillNormal(chunk)) if (Math.abs(v) > tailStart) kept.push(Math.abs(v))
      }
      const tail = Float64Array.from(kept).sort()
      const expected = tailDraws * 2 * (1 - cdf(tailStart))
      expect(Math.abs(tail.length - expected)).toBeLessThan(5 * Math.sqrt(expected))
      const truncated = (t: number) => (cdf(t) - cdf(tailStart)) / (1 - cdf(tailStart))
      let dTail = 0
      tail.forEach((
        v,
        i
      ) => (dTail = Math.max(
        dTail,
        Math.abs(truncated(v) - i / tail.length),
        Math.abs(truncated(v) - (i + 1) / tail.length)
      )))
      expect(dTail).toBeLessThan(1.95 / Math.sqrt(tail.length))
    }
  )

  it("permute every index exactly once", () => {
    const p = permutation(openStream(["perm"]), 1000)
    expect(Array.from(p).sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
  })
})

describe("step noise drawn ahead in a worker", () => {
  it("is each stream's own draws, step after step, and leaves every stream where drawing would have", async () => {
    const d = 37
    const stochastic = [true, false, true, true]
    const streams = Array.from({ length: 5 }, (_, j) => openStream(["prefetch", j]))
    // One stream advanced first: the worker continues from a state, not from a key.
    streams[2].fillNormal(new Float64Array(3))
    const mine = Array.from({ length: 5 }, (_, j) => openStream(["prefetch", j]))
    mine[2].fillNormal(new Float64Array(3))
    const noise = prefetchNormals(streams, stochastic, d)
    for (let k = 0; k < stochastic.length; k++) {
      await noise.ready(k)
      if (!stochastic[k]) continue
      for (let j = 0; j < 5; j++) {
        expect(Array.from(noise.at(k, j))).toEqual(Array.from(mine[j].fillNormal(new Float64Array(d))))
      }
    }
    await noise.done()
    // The next draws of every stream are the ones after the prefetched steps.
    for (let j = 0; j < 5; j++) expect(streams[j].normal()).toBe(mine[j].normal())
  })

  it.skipIf(process.platform !== "linux")("runs at the lowest CPU priority, its own thread only", async () => {
    const noise = prefetchNormals([openStream(["nice"])], [true], 5)
    await noise.done()
    expect(threadNices()).toContain(19)
    expect(callingThreadNice()).toBe(0)
  })

  it("serves two rollouts in flight at once, each its own streams' draws, whichever is read first", async () => {
    const d = 11
    const open = (tag: string) => Array.from({ length: 3 }, (_, j) => openStream(["concurrent", tag, j]))
    const [a, b] = [prefetchNormals(open("a"), [true, true], d), prefetchNormals(open("b"), [true], d)]
    // The second job is read first: it queues behind the first, which needs nothing from this thread.
    await b.ready(0)
    const [mineA, mineB] = [open("a"), open("b")]
    expect(Array.from(b.at(0, 2))).toEqual(Array.from(mineB[2].fillNormal(new Float64Array(d))))
    await a.ready(1)
    mineA[1].fillNormal(new Float64Array(d))
    expect(Array.from(a.at(1, 1))).toEqual(Array.from(mineA[1].fillNormal(new Float64Array(d))))
    await Promise.all([a.done(), b.done()])
  })
})
