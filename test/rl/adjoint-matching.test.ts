/**
 * The adjoint-matching pipelines end to end on the double ring with the outer-ring reward (small
 * configs; the base model is trained once per file): metrics, the stored adjoints read back by DuckDB
 * against the reward's closed-form gradient, truncation, and replay from the stored adjoints.
 */
import { DuckDBInstance } from "@duckdb/node-api"
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { runPipeline } from "../../kernel/run.ts"
import { adjointMatching } from "../../pipelines/adjoint-matching.ts"
import { deterministicAm } from "../../pipelines/deterministic-am.ts"
import { Replay } from "../../pipelines/replay.ts"
import { warmupLr } from "../../training/adjoint-update.ts"
import { isolateCache, metricSeries, metricsText, tempRun, toyRl } from "../support/runs.ts"

const set = {
  ...toyRl,
  groupSize: "8",
  evalSamplesPerPrompt: "64",
  evalEvery: "3",
  iterations: "3",
  lambda: "3",
  keep: "all"
}
const lastWeights = (dir: string) => fs.readFileSync(path.join(dir, "checkpoints/iter-000002/weights.safetensors"))

const run = async (pipeline: typeof adjointMatching | typeof deterministicAm, extra: Record<string, string>) => {
  const out = tempRun("am")
  const exit = await Effect.runPromiseExit(
    runPipeline(pipeline as typeof adjointMatching, { out, progress: "none", set: { ...set, ...extra } })
  )
  if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
  return out
}

const query = async (sql: string) => {
  const db = await DuckDBInstance.create(":memory:")
  const c = await db.connect()
  return (await c.runAndReadAll(sql)).getRowObjectsJson() as Array<Record<string, unknown>>
}

let am = ""
beforeAll(async () => {
  isolateCache("am")
  am = await run(adjointMatching, {})
}, 600_000)

describe("adjoint-matching", () => {
  it("records the adjoint norm of every step, the control and target norms, clipping and ESS", () => {
    for (let k = 0; k <= 6; k++) expect(metricSeries(am, `adjoint_norm.s${k}`).length).toBe(3)
    for (const m of ["control_norm", "target_norm", "masked_fraction", "ess", "am_loss"]) {
      expect(metricSeries(am, m).every((r) => Number.isFinite(r.value)), m).toBe(true)
    }
    // The control grows iteration after iteration while the warm-up raises the rate (it starts at the base's,
    // 0, by construction; what is tested is that training moves it, and keeps moving it).
    const control = metricSeries(am, "control_norm").map((r) => r.value)
    expect(control[0]).toBeLessThan(control[1])
    expect(control[1]).toBeLessThan(control[2])
    expect(metricSeries(am, "eval.improvement.s6").length).toBe(1)
    // 32 trajectories × 4 time indices (2 of the first 60 % of 6 steps, 2 of the rest).
    expect(metricSeries(am, "trained_rows").map((r) => r.value)).toEqual([128, 128, 128])
  })

  it("stores a_N = −λ∇r(x_N) with each final latent: DuckDB's read against the closed-form gradient", async () => {
    const file = path.join(am, "trajectories/iter-000001.parquet")
    const rows = await query(
      `SELECT next_latent AS x, next_adjoint AS a FROM '${file}' WHERE step = 5 ORDER BY trajectory_id`
    )
    expect(rows.length).toBe(32)
    for (const r of rows) {
      const [x, y] = (r.x as Array<number>).map(Number)
      const norm = Math.hypot(x, y)
      // r = −(‖x‖ − 2)², so −λ∇r = 2λ(‖x‖ − 2) x/‖x‖ (λ = 3); float32 storage: 1e-5 relative.
      const expected = [x, y].map((v) => (2 * 3 * (norm - 2) * v) / norm)
      ;(r.a as Array<number>).map(Number).forEach((v, i) =>
        expect(Math.abs(v - expected[i])).toBeLessThan(1e-5 * (1 + Math.abs(expected[i])))
      )
    }
    const [counts] = await query(`SELECT count(adjoint) AS n, count(*) AS total FROM '${file}'`)
    expect([Number(counts.n), Number(counts.total)]).toEqual([32 * 6, 32 * 6])
  })

  it("replayed from the update, re-regresses from the stored adjoints to the same weights bit for bit", async () => {
    const out = tempRun("am-replay")
    await Effect.runPromise(Replay.fromRun(am).from("update").with({}, { out, progress: "none" }))
    expect(lastWeights(out).equals(lastWeights(am))).toBe(true)
    expect(metricsText(out)).toBe(metricsText(am))
  })
})

describe("adjoint matching's recipe (soc-fine-tuning-sd's defaults)", () => {
  const first = (dir: string) => path.join(dir, "checkpoints/iter-000000/weights.safetensors")

  it("warms the learning rate up from 0: the first optimizer step leaves the base's weights", async () => {
    expect([0, 1, 5, 19, 20, 300].map((n) => warmupLr(1e-3, n, 20))).toEqual([0, 5e-5, 2.5e-4, 9.5e-4, 1e-3, 1e-3])
    // One optimizer step (all 32 trajectories in one batch); the base's weights, as an update at lr 0 leaves them.
    const one = { iterations: "1", batchSize: "32" }
    const frozen = fs.readFileSync(first(await run(adjointMatching, { ...one, lr: "0", warmupSteps: "0" })))
    const warm = await run(adjointMatching, one)
    expect(fs.readFileSync(first(warm)).equals(frozen)).toBe(true)
    const cold = await run(adjointMatching, { ...one, warmupSteps: "0" })
    expect(fs.readFileSync(first(cold)).equals(frozen)).toBe(false)
  })

  it("clips no gradient by default (gradClip 0), and clips at a positive gradClip", async () => {
    const set = { iterations: "2", warmupSteps: "0" }
    const none = await run(adjointMatching, set)
    const never = await run(adjointMatching, { ...set, gradClip: "1e30" })
    const tight = await run(adjointMatching, { ...set, gradClip: "1e-4" })
    expect(fs.readFileSync(first(none)).equals(fs.readFileSync(first(never)))).toBe(true)
    expect(fs.readFileSync(first(none)).equals(fs.readFileSync(first(tight)))).toBe(false)
  })

  it("refuses a sampler that is not memoryless before any folder exists, unless memoryless=false", async () => {
    const out = tempRun("am-dance")
    const refused = await Effect.runPromiseExit(
      runPipeline(adjointMatching, {
        out,
        progress: "none",
        set: { ...set, sampler: "dance-grpo", noiseLevel: "0.3" }
      })
    )
    expect(String(Exit.isFailure(refused) ? refused.cause : "")).toMatch(
      /dance-grpo at noise 0\.3 is not memoryless.*flow-grpo at noiseLevel 1\.414.*ddim or gddim at 1/
    )
    expect(fs.existsSync(out)).toBe(false)
    await run(adjointMatching, { sampler: "dance-grpo", noiseLevel: "0.3", memoryless: "false", iterations: "1" })
    await run(adjointMatching, { sampler: "ddim", noiseLevel: "1", iterations: "1" })
  })
})

describe("deterministic-am", () => {
  // What this checks is the setting's reading (K = N and K = 0 start the window at step 0); that a truncated
  // recursion is right is checked against central differences from step 3 of 5 (test/diffusion/adjoint.test.ts).
  it("reads K = N as no truncation, like K = 0, and a K < N as another training", async () => {
    const [full, all, truncated] = [
      await run(deterministicAm, { adjointSteps: "0" }),
      await run(deterministicAm, { adjointSteps: "6" }),
      await run(deterministicAm, { adjointSteps: "3" })
    ]
    expect(lastWeights(all).equals(lastWeights(full))).toBe(true)
    expect(metricSeries(all, "control_norm")).toEqual(metricSeries(full, "control_norm"))
    expect(lastWeights(truncated).equals(lastWeights(full))).toBe(false)
  })

  it("truncated to the last K = 3 steps computes adjoints and trains rows only there", async () => {
    const dir = await run(deterministicAm, {})
    expect(metricSeries(dir, "adjoint_norm.s2").length).toBe(0)
    expect(metricSeries(dir, "adjoint_norm.s3").length).toBe(3)
    // Each trajectory trains all three steps of the window (round(0.6·3) = 2 early + 1 late).
    expect(metricSeries(dir, "trained_rows").map((r) => r.value)).toEqual([96, 96, 96])
    const file = path.join(dir, "trajectories/iter-000000.parquet")
    const [c] = await query(
      `SELECT count(adjoint) AS n, min(step) FILTER (adjoint IS NOT NULL) AS first FROM '${file}'`
    )
    expect([Number(c.n), Number(c.first)]).toEqual([32 * 3, 3])
    // Replay re-regresses from the stored value adjoints, the base outputs recomputed by the same fused pass.
    const out = tempRun("dam-replay")
    await Effect.runPromise(Replay.fromRun(dir).from("update").with({}, { out, progress: "none" }))
    expect(lastWeights(out).equals(lastWeights(dir))).toBe(true)
  })
})
