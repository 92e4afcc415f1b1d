/** Learning curves reduced per seed (area, equal compute seconds) and the claims judged on them, by hand. */
import { describe, expect, it } from "vitest"
import { effectOf, type Values } from "../../experiments/compare.ts"
import { atEqualLevel, atEqualSeconds, firstReach, interpolate, meanLevel } from "../../experiments/curves.ts"

/** iteration → seed → value from rows [iteration, seed, value]. */
const curve = (rows: ReadonlyArray<readonly [number, number, number]>) => {
  const out = new Map<number, Map<number, number>>()
  for (const [i, s, v] of rows) out.set(i, (out.get(i) ?? new Map()).set(s, v))
  return out
}

describe("a learning curve's mean level", () => {
  it("is the trapezoid area over its span divided by the span", () => {
    // Seed 0: 0 at 0, 2 at 2, 2 at 4 → area 2 + 4 = 6 over 4 → 1.5. Seed 1: one evaluation, its own level.
    const c = curve([[0, 0, 0], [2, 0, 2], [4, 0, 2], [4, 1, 7]])
    const level = meanLevel(c, [0, 2, 4])
    expect(level.get(0)).toBe(1.5)
    expect(level.get(1)).toBe(7)
  })
})

describe("two curves at equal compute seconds", () => {
  it("are read at the cheaper run's last seconds, linearly between evaluations", () => {
    expect(interpolate([{ x: 0, y: 0 }, { x: 10, y: 5 }], 4)).toBe(2)
    expect(interpolate([{ x: 2, y: 1 }, { x: 10, y: 5 }], 1)).toBe(1)
    // a: fast per second (10 s per evaluation), b: slow (30 s); b's last evaluation at 30 s is the cheaper.
    const a = { curve: curve([[0, 0, 0], [1, 0, 4], [2, 0, 6]]), seconds: curve([[0, 0, 10], [1, 0, 20], [2, 0, 40]]) }
    const b = { curve: curve([[0, 0, 0], [1, 0, 3]]), seconds: curve([[0, 0, 15], [1, 0, 30]]) }
    const eq = atEqualSeconds(a, b)
    expect(eq.budget.get(0)).toBe(30)
    expect(eq.a.get(0)).toBe(5) // halfway from (20, 4) to (40, 6)
    expect(eq.b.get(0)).toBe(3)
  })
})

describe("two curves at a common level of another", () => {
  it("read y where x first reaches the level, linearly within the crossing segment", () => {
    // x rises to 4, dips, rises again: the first crossing of 3 is between (2, 10) and (4, 20).
    const p = [{ x: 0, y: 0 }, { x: 2, y: 10 }, { x: 4, y: 20 }, { x: 1, y: 30 }, { x: 5, y: 40 }]
    expect(firstReach(p, 3)).toBe(15)
    expect(firstReach(p, 6)).toBeUndefined()
  })

  it("at the largest level both reach (gold at equal KL) or the weaker arm's last level (time to reach)", () => {
    // a's x (say KL) climbs to 8, b's to 4: the common level is 4, reached by a halfway between its 2 and 6.
    const a = {
      x: curve([[0, 0, 0], [5, 0, 2], [10, 0, 6], [15, 0, 8]]),
      y: curve([[0, 0, 0], [5, 0, 1], [10, 0, 3], [15, 0, 2]])
    }
    const b = { x: curve([[0, 0, 0], [5, 0, 4], [10, 0, 3]]), y: curve([[0, 0, 0], [5, 0, 5], [10, 0, 9]]) }
    const max = atEqualLevel(a, b, "max")
    expect([max.level.get(0), max.a.get(0), max.b.get(0)]).toEqual([4, 2, 5])
    // "last": the smaller of the last levels, 3 (b's); a reaches 3 a quarter of the way from 2 to 6.
    const last = atEqualLevel(a, b, "last")
    expect([last.level.get(0), last.a.get(0), last.b.get(0)]).toEqual([3, 1.5, 3.75])
  })
})

describe("a claim between two arms", () => {
  // Three seeds; "fast" reaches 1 by iteration 2 and stays, "slow" creeps to 1 by iteration 8; both end at 1.
  // Seed s adds 0.01·s to fast's values (the effect stays positive with a spread, so the t test has an s.e.).
  const iterations = [0, 2, 4, 6, 8]
  const fastAt = (i: number) => (i === 0 ? 0 : 1)
  const slowAt = (i: number) => i / 8
  const rows = (f: (i: number) => number, bump: number) =>
    curve(iterations.flatMap((i) => [0, 1, 2].map((s) => [i, s, f(i) + (i > 0 ? bump * s : 0)] as const)))
  const seconds = (perIteration: number) =>
    curve(iterations.flatMap((i) => [0, 1, 2].map((s) => [i, s, (i + 1) * perIteration] as const)))
  const values: Values = new Map([
    ["fast", new Map([["m", rows(fastAt, 0.01)], ["compute_seconds", seconds(4)]])],
    ["slow", new Map([["m", rows(slowAt, 0)], ["compute_seconds", seconds(1)]])]
  ])
  const claim = (at: "last" | "area" | "seconds" | "reach") => ({
    name: "fast learns faster",
    metric: "m",
    arm: "fast",
    than: "slow",
    direction: ">" as const,
    at
  })

  it("at the last evaluation sees only where both ended", () => {
    // 1 + 0.01 s − 1: mean 0.01 over seeds 0, 1, 2.
    expect(effectOf(values, claim("last"))!.effect.mean).toBeCloseTo(0.01, 12)
  })

  it("as the curves' mean level sees the faster rise", () => {
    // fast (seed 0): trapezoids 1 + 2 + 2 + 2 = 7 over 8; slow: 4 over 8 → 0.875 − 0.5, plus the bump's level.
    const e = effectOf(values, claim("area"))!
    expect(e.effect.mean).toBeCloseTo(0.375 + 0.01 * (7 / 8), 12)
    expect(e.where).toMatch(/mean level over iterations 0–8 \(5 evaluations\)/)
  })

  it("at equal compute seconds reads fast where slow's seconds ran out", () => {
    // fast costs 4 s an iteration, slow 1 s: slow's 9 s by iteration 8 fall between fast's iteration 0 (4 s,
    // value 0) and 2 (12 s, 1 + 0.01 s) → 5/8 of the way; per seed (5/8)(1 + 0.01 s) − 1, mean −0.36875.
    const e = effectOf(values, claim("seconds"))!
    expect(e.effect.mean).toBeCloseTo((5 / 8) * 1.01 - 1, 12)
    expect(e.where).toMatch(/9\.0 s on average/)
  })

  it("as seconds to reach a level counts how long each arm took to get where the weaker one ended", () => {
    // Both end at m ≈ 1 (slow exactly 1, the weaker): fast (seed s) reaches 1 at iteration 0 → 2, at
    // 1/(1 + 0.01 s) of the segment: 4 + 8/(1 + 0.01 s) s; slow at iteration 8, 9 s.
    const e = effectOf(values, claim("reach"))!
    const fast = [0, 1, 2].map((s) => 4 + 8 / (1 + 0.01 * s))
    expect(e.effect.mean).toBeCloseTo(fast.reduce((a, v) => a + v, 0) / 3 - 9, 12)
    expect(e.where).toMatch(/compute seconds to reach m = 1\.000/)
  })
})

describe("the over-optimisation fronts of proxy runs", () => {
  // A planted run: the proxy's improvement rises at every evaluation while the gold (the judge's score)
  // rises, peaks at iteration 20 and falls; the path KL grows as 1, 4, 9, 16 (√KL = 1, 2, 3, 4).
  const planted = (values: ReadonlyArray<number>, bump = 0) =>
    curve(values.flatMap((v, k) => [0, 1].map((s) => [k * 10, s, v + bump * s] as const)))
  const values: Values = new Map([[
    "arm",
    new Map([
      ["eval.improvement.s10", planted([1, 2, 3, 4])],
      ["eval.gold.s10", planted([-3, -2, -1.5, -2.5], 0.2)],
      ["eval.path_kl.s10", planted([1, 4, 9, 16])]
    ])
  ]])

  it("draw the gold against the proxy and √KL, and read it at the largest common proxy level", async () => {
    const { curveCharts } = await import("../../experiments/html.ts")
    const charts = new Map(curveCharts(values).map((c) => [c.file, c.svg]))
    expect([...charts.keys()]).toEqual(expect.arrayContaining([
      "front-eval.gold.s10-vs-proxy.svg",
      "front-eval.gold.s10-vs-sqrt-kl.svg"
    ]))
    // The gold at equal proxy reward: read at the proxy levels 1..4 it is −2.9, −1.9, −1.4, −2.4 (mean of seeds).
    const eq = atEqualLevel(
      { x: values.get("arm")!.get("eval.improvement.s10")!, y: values.get("arm")!.get("eval.gold.s10")! },
      { x: values.get("arm")!.get("eval.improvement.s10")!, y: values.get("arm")!.get("eval.gold.s10")! },
      "max"
    )
    expect(eq.level.get(0)).toBe(4)
    expect(eq.a.get(1)).toBeCloseTo(-2.3, 12)
    // The √KL axis is drawn at 1..4: the chart's x-axis ticks reach 4, not 16.
    expect(charts.get("front-eval.gold.s10-vs-sqrt-kl.svg")).toMatch(/√KL/)
    expect(charts.get("front-eval.gold.s10-vs-sqrt-kl.svg")).not.toMatch(/>16</)
  })
})
