/** An RL run's Parquet files read by an independent engine (DuckDB) agree with etaflow's own numbers. */
import { DuckDBInstance } from "@duckdb/node-api"
import { Effect } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { runPipeline } from "../../kernel/run.ts"
import { flowGrpo } from "../../pipelines/flow-grpo.ts"
import { isolateCache, metricSeries, tempRun, toyRl } from "../support/runs.ts"

let dir = ""
const query = async (sql: string) => {
  const db = await DuckDBInstance.create(":memory:")
  const c = await db.connect()
  return (await c.runAndReadAll(sql)).getRowObjectsJson() as Array<Record<string, unknown>>
}

beforeAll(async () => {
  isolateCache("duck")
  dir = tempRun("duck")
  const { lr: _lr, ...toy } = toyRl
  const set = {
    ...toy,
    steps: "5",
    groupSize: "8",
    evalSteps: "5",
    evalSamplesPerPrompt: "32",
    evalEvery: "2",
    iterations: "2",
    // Every iteration's trajectories are kept, so the reader sees them all.
    keep: "all"
  }
  await Effect.runPromise(runPipeline(flowGrpo, { out: dir, progress: "none", set }))
}, 600_000)

describe("DuckDB reading a run", () => {
  it("counts one row per (trajectory, step) and sees 2-element latents", async () => {
    const rows = await query(
      `SELECT count(*) AS n, min(len(latent)) AS lo, max(len(latent)) AS hi FROM '${dir}/trajectories/*.parquet'`
    )
    expect(rows[0]).toEqual({ n: "320", lo: "2", hi: "2" })
  })

  it("finds per step the std etaflow stored, and per iteration the reward_mean it logged", async () => {
    const perStep = await query(
      `SELECT step, count(*) AS n, min(std) AS lo, max(std) AS hi FROM '${dir}/trajectories/iter-000000.parquet' ` +
        "GROUP BY step ORDER BY step"
    )
    expect(perStep.map((r) => r.n)).toEqual(Array(5).fill("32"))
    for (const r of perStep) expect(r.lo).toBe(r.hi) // a, b, s depend on the step only
    const rewards = await query(
      `SELECT iteration, avg(reward) AS r FROM '${dir}/trajectories/*.parquet' WHERE reward IS NOT NULL ` +
        "GROUP BY iteration ORDER BY iteration"
    )
    const logged = metricSeries(dir, "reward_mean")
    expect(rewards.map((r) => Number(r.iteration))).toEqual([0, 1])
    rewards.forEach((r, i) => expect(Number(r.r)).toBeCloseTo(logged[i].value, 12))
  })

  it("gets each transition's pair with the README's query: x_{k+1} from the next row, x_N from the last", async () => {
    const pairs = await query(
      `SELECT trajectory_id, step, latent, coalesce(next_latent, lead(latent) OVER ` +
        `(PARTITION BY iteration, trajectory_id ORDER BY step)) AS x_next ` +
        `FROM '${dir}/trajectories/iter-000000.parquet' ORDER BY trajectory_id, step`
    )
    // The pair of (trajectory 0, step 1) is the latent of step 2; every transition has one.
    expect(pairs.every((p) => p.x_next !== null)).toBe(true)
    expect(String(pairs[1].x_next)).toBe(String(pairs[2].latent))
    expect(String(pairs[1].x_next)).not.toBe(String(pairs[1].latent))
    expect(String(pairs[1].x_next).split(",")).toHaveLength(2)
  })

  it("reads metrics.parquet and the evaluation rows", async () => {
    const m = await query(
      `SELECT count(*) AS n FROM '${dir}/metrics.parquet' WHERE name = 'logprob_deviation' AND value < 1e-5`
    )
    expect(m[0].n).toBe("2")
    const e = await query(`SELECT iteration, steps, count(*) AS n FROM '${dir}/eval/*.parquet' GROUP BY ALL`)
    expect(e).toEqual([{ iteration: 1, steps: 5, n: "32" }])
  })
})
