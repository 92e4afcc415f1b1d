import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { Rng } from "../../kernel/services.ts"
import { groupNormalize, trackPrompts } from "../../nodes/rl/advantages.ts"
import { prompts } from "../../nodes/setup/prompts.ts"
import { openStream } from "../../random/streams.ts"

const direct = (xs: Array<number>, unbiased: boolean) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length
  return { m, s: Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - (unbiased ? 1 : 0))) }
}

describe("advantage normalizers", () => {
  const rewards = Float64Array.from(openStream(["adv"]).fillNormal(new Float64Array(12)))

  it("GRPO: each group's advantages are (R − mean)/(std + ε) with the population or unbiased std", () => {
    for (const std of ["population", "unbiased"] as const) {
      const { advantages } = groupNormalize(rewards, 4, { std, globalStd: false, eps: 1e-4 })
      for (let g = 0; g < 3; g++) {
        const group = Array.from(rewards.subarray(4 * g, 4 * g + 4))
        const { m, s } = direct(group, std === "unbiased")
        for (let i = 0; i < 4; i++) expect(advantages[4 * g + i]).toBeCloseTo((group[i] - m) / (s + 1e-4), 12)
      }
    }
  })

  it("GRPO with global std divides by the whole batch's std, and counts groups without signal", () => {
    const tied = Float64Array.from([1, 1, 1, 1, ...rewards.subarray(4)])
    const { advantages, zeroStdGroups } = groupNormalize(tied, 4, { std: "population", globalStd: true, eps: 1e-4 })
    const { s } = direct(Array.from(tied), false)
    const g1 = Array.from(tied.subarray(4, 8))
    expect(advantages[5]).toBeCloseTo((g1[1] - direct(g1, false).m) / (s + 1e-4), 12)
    expect(zeroStdGroups).toBe(1)
    expect(Array.from(advantages.subarray(0, 4))).toEqual([0, 0, 0, 0])
  })

  it(
    "DDPO's tracker uses the batch statistics below min count, then its per-prompt buffer of the last `buffer` rewards",
    () => {
      const keys = ["a", "a", "b", "b"]
      const first = trackPrompts(Float64Array.from([1, 2, 3, 5]), keys, {}, 3, 3)
      const batch = direct([1, 2, 3, 5], false)
      expect(first.advantages[0]).toBeCloseTo((1 - batch.m) / (batch.s + 1e-6), 12)
      expect(first.tracker).toEqual({ a: [1, 2], b: [3, 5] })
      const second = trackPrompts(Float64Array.from([4, 6, 7, 9]), keys, first.tracker, 3, 3)
      expect(second.tracker).toEqual({ a: [2, 4, 6], b: [5, 7, 9] })
      const a = direct([2, 4, 6], false)
      expect(second.advantages[1]).toBeCloseTo((6 - a.m) / (a.s + 1e-6), 12)
    }
  )
})

describe("prompt batches", () => {
  it("put every drawn prompt in exactly one group of groupSize, seeded", async () => {
    const run = (seed: number) =>
      Effect.runSync(
        prompts.run({ config: { dataset: "mnist", prompts: "default", promptsPerIteration: 7, groupSize: 5 } }).pipe(
          Effect.provideService(Rng, Rng.forCall(seed, 0, "prompts"))
        )
      )
    const b = run(1)
    expect(b.prompt.length).toBe(35)
    const counts = new Map<string, number>()
    b.prompt.forEach((p, i) => {
      counts.set(p!, (counts.get(p!) ?? 0) + 1)
      expect(b.prompt[b.groupId[i] * 5]).toBe(p)
      expect(b.condition[i]).toBe(Number(p!.slice(-1)))
    })
    expect([...counts.values()].every((c) => c === 5)).toBe(true)
    expect(counts.size).toBe(7)
    expect(run(1)).toEqual(b)
    expect(run(2).prompt).not.toEqual(b.prompt)
  })
})
