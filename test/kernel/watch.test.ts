/** `stopWhen` rules over hand-written metric series (kernel/watch.ts). */
import { describe, expect, it } from "vitest"
import { parseStopRules, stopReason, unseenRules } from "../../kernel/watch.ts"

const series = (name: string, values: ReadonlyArray<number>, every = 5) =>
  values.map((value, i) => ({ iteration: i * every, name, value }))

describe("stopWhen rules", () => {
  it("parse the three forms, separated by ';', and nothing from an empty text", () => {
    expect(parseStopRules("")).toEqual([])
    expect(parseStopRules("eval.gold.s10 falls 3; eval.fd_target.s10 rises 2;eval.diversity_target.s10 < 0.5;kl>2e1"))
      .toEqual([
        { kind: "falls", metric: "eval.gold.s10", times: 3 },
        { kind: "rises", metric: "eval.fd_target.s10", times: 2 },
        { kind: "below", metric: "eval.diversity_target.s10", value: 0.5 },
        { kind: "above", metric: "kl", value: 20 }
      ])
  })

  it.each(["eval.gold falls", "eval.gold falls 0", "eval.gold rises x", "eval.gold < x", "eval.gold = 3", "< 3"])(
    "refuse %j naming the rule and the forms they take",
    (text) => {
      expect(() => parseStopRules(text)).toThrow(/^".*" is not a rule; expected "METRIC falls K"/)
    }
  )

  it("stop on K consecutive decreases only: a rise or a tie in the last K + 1 values keeps the run going", () => {
    const rules = parseStopRules("eval.gold.s10 falls 3")
    // 4 values falling in a row at the end: −1.0 → −1.2 → −1.5 → −1.6.
    expect(stopReason(rules, series("eval.gold.s10", [-2, -1, -1.2, -1.5, -1.6]))).toBe(
      "eval.gold.s10 fell 3 times in a row (-1.000 → -1.200 → -1.500 → -1.600, iterations 5, 10, 15, 20)"
    )
    expect(stopReason(rules, series("eval.gold.s10", [-1, -1.2, -1.5]))).toBeUndefined()
    expect(stopReason(rules, series("eval.gold.s10", [-1, -1.2, -1.2, -1.5]))).toBeUndefined()
    expect(stopReason(rules, series("eval.gold.s10", [-1, -1.2, -1.5, -1.6, -1.4]))).toBeUndefined()
    const rising = parseStopRules("eval.fd_target.s10 rises 2")
    expect(stopReason(rising, series("eval.fd_target.s10", [9, 2, 4, 7]))).toMatch(/rose 2 times in a row \(2\.000 → /)
    expect(stopReason(rising, series("eval.fd_target.s10", [9, 2, 4, 3]))).toBeUndefined()
  })

  it("compare the latest value with a threshold, and report the first rule that holds", () => {
    const rows = [...series("eval.diversity_target.s10", [0.9, 0.4]), ...series("kl", [1, 30])]
    expect(stopReason(parseStopRules("kl > 20; eval.diversity_target.s10 < 0.5"), rows)).toBe(
      "kl = 30.00 at iteration 5, above 20"
    )
    expect(stopReason(parseStopRules("eval.diversity_target.s10 < 0.3"), rows)).toBeUndefined()
  })

  it("name the rules whose metric was never logged", () => {
    expect(unseenRules(parseStopRules("eval.gold.s8 falls 2; kl > 1"), series("kl", [0]))).toEqual(["eval.gold.s8"])
  })
})
