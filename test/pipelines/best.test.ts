/** The `best` setting: which evaluated iteration `export --iteration best` and keep=minimal take. */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { bestIteration } from "../../pipelines/rl-retention.ts"
import { tempDir } from "../support/runs.ts"

/** A run folder holding only these metric rows. */
const folder = (rows: ReadonlyArray<readonly [number, string, number]>) => {
  const dir = tempDir("best")
  const lines = rows.map(([iteration, name, value]) => JSON.stringify({ iteration, name, value }) + "\n")
  fs.writeFileSync(path.join(dir, "metrics.jsonl"), lines.join(""))
  return dir
}

describe("the best checkpoint", () => {
  // The proxy rises throughout while the gold peaks at iteration 5: the over-optimisation picture.
  const dir = folder([
    [0, "eval.improvement.s10", 0.1],
    [0, "eval.gold.s10", -1.5],
    [0, "eval.fd_target.s10", 9],
    [5, "eval.improvement.s10", 0.6],
    [5, "eval.gold.s10", -0.9],
    [5, "eval.fd_target.s10", 4],
    [10, "eval.improvement.s10", 1.4],
    [10, "eval.gold.s10", -1.2],
    [10, "eval.fd_target.s10", 4]
  ])

  it("is the largest ODE improvement by default, and the gold's best when the reward is the proxy", () => {
    expect(bestIteration(dir, { best: "default", reward: "default", steps: 10, task: "prompted" })).toBe(10)
    expect(bestIteration(dir, { best: "default", reward: "proxy", steps: 10, task: "prompted" })).toBe(5)
    // On tilt the gold is the distance to the real digits of T: its smallest (the last on ties).
    expect(bestIteration(dir, { best: "default", reward: "proxy", steps: 10, task: "tilt" })).toBe(10)
  })

  it("follows a named metric, the smallest with min: (the last on ties), and is undefined for one never logged", () => {
    expect(bestIteration(dir, { best: "eval.gold.s10", reward: "default", steps: 10, task: "prompted" })).toBe(5)
    expect(bestIteration(dir, { best: "min:eval.fd_target.s10", reward: "default", steps: 10, task: "prompted" })).toBe(
      10
    )
    expect(bestIteration(dir, { best: "eval.gold.s4", reward: "default", steps: 10, task: "prompted" })).toBeUndefined()
  })
})
