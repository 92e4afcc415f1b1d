/**
 * Experiments end to end on the double ring (2 arms × 2 seeds, then a third seed): the folder, the
 * comparison checked against DuckDB's own aggregation of the runs' metrics.jsonl, paired differences,
 * verdicts, extension that runs only what is missing, and settings refused before any folder exists.
 */
import { DuckDBInstance } from "@duckdb/node-api"
import { Effect, Exit, Fiber } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { chromium } from "playwright-core"
import { beforeAll, describe, expect, it } from "vitest"
import { experiments } from "../experiments/builtin.ts"
import { computeSeconds } from "../experiments/compare.ts"
import { Experiment } from "../experiments/experiment.ts"
import { planExperiment, runExperiment } from "../experiments/run.ts"
import { critical, judgeClaims, pairedDifference, verdictOf } from "../experiments/stats.ts"
import { flowGrpo } from "../pipelines/flow-grpo.ts"
import { isolateCache, tempDir, toyRl } from "./support/runs.ts"

const { lr: _lr, evalEvery: _every, ...toy } = toyRl
const common = { ...toy, groupSize: "8", evalSamplesPerPrompt: "32" }
const def = Experiment.define({
  name: "toy-lr",
  doc: "flow-grpo on the double ring without and with learning",
  seeds: 2,
  iterations: 2,
  evaluate: { steps: [6], every: 1 },
  arms: [
    Experiment.arm("frozen", flowGrpo, { ...common, lr: 0 }),
    Experiment.arm("learning", flowGrpo, { ...common, lr: 3e-3 })
  ],
  claims: [
    { name: "learning beats frozen", metric: "eval.improvement.s6", arm: "learning", than: "frozen", direction: ">" },
    { name: "frozen does not improve", metric: "eval.improvement.s6", arm: "frozen", over: "training", direction: ">" }
  ]
})

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, "utf8"))
const readMetricsOf = (dir: string, arm: string) =>
  fs.readFileSync(path.join(dir, `runs/${arm}/seed-0/metrics.jsonl`), "utf8").split("\n").filter((l) => l !== "")
    .map((l) => JSON.parse(l) as { iteration: number; name: string })

const query = async (sql: string) => {
  const db = await DuckDBInstance.create(":memory:")
  const c = await db.connect()
  return (await c.runAndReadAll(sql)).getRowObjectsJson() as Array<Record<string, unknown>>
}

let out = ""
beforeAll(async () => {
  isolateCache("experiments")
  out = path.join(tempDir("experiment"), "toy-lr")
  const exit = await Effect.runPromiseExit(runExperiment(def, { out }))
  if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
}, 600_000)

describe("an experiment", () => {
  it("keeps every (arm, seed) as an ordinary complete run folder, listed in experiment.json", () => {
    const record = JSON.parse(fs.readFileSync(path.join(out, "experiment.json"), "utf8"))
    expect(record.runs.map((r: { dir: string; status: string }) => [r.dir, r.status])).toEqual([
      ["runs/frozen/seed-0", "complete"],
      ["runs/frozen/seed-1", "complete"],
      ["runs/learning/seed-0", "complete"],
      ["runs/learning/seed-1", "complete"]
    ])
    expect(record.arms[1].config.lr).toBe(3e-3)
    expect(record.arms[0].config.iterations).toBe(2)
  })

  it("compares arms across seeds as DuckDB computes it from the runs' metrics.jsonl", async () => {
    const raw = (arm: string) =>
      `(SELECT *, ${
        JSON.stringify(arm).replaceAll("\"", "'")
      } AS arm, CAST(regexp_extract(filename, 'seed-(\\d+)', 1) AS INT) AS seed
        FROM read_json_auto('${out}/runs/${arm}/seed-*/metrics.jsonl', filename = true))`
    const expected = await query(
      `SELECT arm, name AS metric, iteration, avg(value) AS mean,
         stddev_samp(value) / sqrt(count(*)) AS se, count(*) AS n
       FROM (${raw("frozen")} UNION ALL ${raw("learning")}) GROUP BY ALL ORDER BY ALL`
    )
    const got = await query(
      `SELECT arm, metric, iteration, mean, se, n FROM '${out}/comparison.parquet'
       WHERE kind = 'arm' AND metric NOT IN ('iteration_seconds', 'compute_seconds') ORDER BY ALL`
    )
    expect(got.length).toBe(expected.length)
    got.forEach((g, i) => {
      const e = expected[i]
      expect([g.arm, g.metric, Number(g.iteration), Number(g.n)]).toEqual([
        e.arm,
        e.metric,
        Number(e.iteration),
        Number(e.n)
      ])
      expect(Math.abs(Number(g.mean) - Number(e.mean))).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(Number(e.mean))))
      expect(Math.abs(Number(g.se) - Number(e.se))).toBeLessThanOrEqual(1e-9 * (1 + Math.abs(Number(e.se))))
    })
    // Paired differences: the same seed's runs joined, the difference averaged.
    const [pair] = await query(
      `SELECT avg(l.value - f.value) AS mean, stddev_samp(l.value - f.value) / sqrt(count(*)) AS se
       FROM ${raw("learning")} l JOIN ${raw("frozen")} f USING (seed, name, iteration)
       WHERE name = 'eval.improvement.s6' AND iteration = 1`
    )
    const [row] = await query(
      `SELECT mean, se, se_unpaired FROM '${out}/comparison.parquet'
       WHERE kind = 'difference' AND metric = 'eval.improvement.s6' AND iteration = 1`
    )
    expect(Math.abs(Number(row.mean) - Number(pair.mean))).toBeLessThan(1e-12)
    expect(Math.abs(Number(row.se) - Number(pair.se))).toBeLessThan(1e-12)
    expect(Number.isFinite(Number(row.se_unpaired))).toBe(true)
  })

  it("puts compute seconds beside the metrics: accumulated, evaluation excluded, under the wall time", () => {
    for (const dir of ["runs/frozen/seed-0", "runs/learning/seed-1"]) {
      const rows = computeSeconds(path.join(out, dir))
      const total = rows.filter((r) => r.name === "compute_seconds").map((r) => r.value)
      expect(total.length).toBe(2)
      expect(total[1]).toBeGreaterThan(total[0])
      const m = JSON.parse(fs.readFileSync(path.join(out, dir, "manifest.json"), "utf8"))
      expect(total[1]).toBeLessThan((Date.parse(m.updated_at) - Date.parse(m.created_at)) / 1000)
    }
  })

  it("writes each claim's effect and computed verdict into findings.md", () => {
    const text = fs.readFileSync(path.join(out, "findings.md"), "utf8")
    const line = text.split("\n").find((l) => l.startsWith("- **learning beats frozen**")) ?? ""
    expect(line).toMatch(/effect -?\d+\.\d+ ± \d+\.\d+ \(n=2\) at iteration 1, learning − frozen; t = /)
    // Two seeds: one degree of freedom, no verdict.
    expect(line).toMatch(/→ \*\*too few seeds\*\* \(Holm: too few seeds\)$/)
    expect(text).toContain("two-sided paired t test across seeds at 95 % confidence")
    // lr 0 leaves the weights at the base's: its improvement is exactly 0 at every evaluation.
    expect(text).toMatch(/\*\*frozen does not improve\*\* .*effect 0\.0000 ± 0\.0000 .* → \*\*too few seeds\*\*/)
    expect(fs.readFileSync(path.join(out, "comparison.md"), "utf8")).toMatch(/\| eval\.improvement\.s6 \|/)
  })

  it("with a third seed runs only the two new runs and leaves the others untouched", async () => {
    const stamp = (dir: string) => JSON.parse(fs.readFileSync(path.join(out, dir, "manifest.json"), "utf8")).updated_at
    const before = stamp("runs/learning/seed-0")
    await Effect.runPromise(runExperiment(def, { out, seeds: 3 }))
    expect(stamp("runs/learning/seed-0")).toBe(before)
    expect(fs.existsSync(path.join(out, "runs/frozen/seed-2/manifest.json"))).toBe(true)
    const [n] = await query(`SELECT max(n) AS n FROM '${out}/comparison.parquet'`)
    expect(Number(n.n)).toBe(3)
    // The planted effect (lr = 0 against learning) gets its verdict.
    expect(fs.readFileSync(path.join(out, "findings.md"), "utf8")).toMatch(/learning beats frozen.*→ \*\*supported\*\*/)
  }, 600_000)

  it("interrupted mid-run, continues where it stopped and ends with the numbers of an uninterrupted run", async () => {
    // Long enough that the interrupt lands mid-run: 3 toy iterations took ~130 ms, less than one poll.
    const long = Experiment.define({ ...def, name: "toy-interrupted", seeds: [0], iterations: 20, claims: [] })
    const dir = path.join(tempDir("experiment-kill"), "x")
    const manifest = path.join(dir, "runs/frozen/seed-0/manifest.json")
    const fiber = Effect.runFork(runExperiment(long, { out: dir }))
    // Interrupt once the first run has committed an iteration (bounded wait: 2 min).
    for (let i = 0; i < 24_000 && !(fs.existsSync(manifest) && readJson(manifest).iterations_complete >= 1); i++) {
      await new Promise((r) => setTimeout(r, 5))
    }
    await Effect.runPromise(Fiber.interrupt(fiber))
    expect(readJson(manifest).status).not.toBe("complete")
    await Effect.runPromise(runExperiment(long, { out: dir }))
    expect(readJson(path.join(dir, "experiment.json")).runs.every((r: { status: string }) => r.status === "complete"))
      .toBe(true)
    // The same experiment uninterrupted: the same comparison, bit for bit (timing rows aside: wall seconds).
    const reference = path.join(tempDir("experiment-reference"), "x")
    await Effect.runPromise(runExperiment(long, { out: reference }))
    const rows = (d: string) =>
      query(
        `SELECT * FROM '${d}/comparison.parquet' WHERE metric NOT IN ('iteration_seconds', 'compute_seconds')
         ORDER BY kind, arm, metric, iteration`
      )
    const [got, expected] = [await rows(dir), await rows(reference)]
    expect(got.length).toBeGreaterThan(50)
    expect(JSON.stringify(got)).toBe(JSON.stringify(expected))
    // No iteration was logged twice.
    expect(new Set(readMetricsOf(dir, "frozen").map((r) => `${r.iteration}|${r.name}`)).size)
      .toBe(readMetricsOf(dir, "frozen").length)
  }, 600_000)

  it("refuses a bad setting of any arm, naming the arm, before any folder exists", async () => {
    const bad = path.join(tempDir("experiment-bad"), "never")
    const exit = await Effect.runPromiseExit(runExperiment(def, { out: bad, set: { "learning.lr": "-1" } }))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(/arm learning: .*lr/)
    const unknown = await Effect.runPromiseExit(runExperiment(def, { out: bad, set: { colour: "red" } }))
    expect(String(Exit.isFailure(unknown) ? unknown.cause : "")).toMatch(/no arm has a setting "colour"/)
    expect(fs.existsSync(bad)).toBe(false)
  })
})

const CHROMIUM = "/usr/bin/chromium"

describe.skipIf(!fs.existsSync(CHROMIUM))("experiment.html in headless chromium", () => {
  it("overlays every arm's curves with bands, lists the verdicts, and loads nothing from the network", async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox"] })
    const page = await browser.newPage()
    const requests: Array<string> = []
    page.on("request", (r) => requests.push(r.url()))
    await page.goto(`file://${path.join(out, "experiment.html")}`)
    // eval.improvement.s6, eval.gap.s6, eval.path_kl.s6 and reward_mean, by iteration and by compute seconds,
    // 2 arms each.
    expect(await page.locator("svg.chart polyline.series").count()).toBe(4 * 2 * 2)
    expect(await page.locator("svg.chart polygon").count()).toBeGreaterThanOrEqual(4 * 2 * 2)
    expect(await page.locator("li.claim").count()).toBe(2)
    expect(await page.locator("li.claim b.verdict").first().textContent()).toMatch(
      /supported|contradicted|inconclusive/
    )
    expect(requests.every((u) => u.startsWith("file:") || u.startsWith("data:"))).toBe(true)
    await browser.close()
  })
})

describe("the built-in experiments", () => {
  it.each(experiments.map((e) => [e.name, e] as const))(
    "%s resolves every arm's settings and passes its pipelines' checks, with a budget",
    (_, e) => {
      const plan = planExperiment(e)
      expect(plan.runs.length).toBe(e.arms.length * 3)
      expect(e.budget).toMatch(/min/)
    }
  )
})

describe("experiment statistics", () => {
  it("pair by seed: the paired s.e. of a shared-noise difference is far below the unpaired one", () => {
    const a = new Map([[0, 1.0], [1, 2.0], [2, 3.0]])
    const b = new Map([[0, 0.9], [1, 1.8], [2, 2.9]])
    const d = pairedDifference(a, b)
    // Differences 0.1, 0.2, 0.1: mean 0.1333, sample sd 0.0577, s.e. 0.0333. Unpaired: the sample
    // variances are 1 (a) and 2.00667/2 = 1.00333 (b), so √((1 + 1.00333)/3) = 0.8172.
    expect(d.mean).toBeCloseTo(0.13333333, 8)
    expect(d.se).toBeCloseTo(0.05773503 / Math.sqrt(3), 8)
    expect(d.seUnpaired).toBeCloseTo(Math.sqrt((1 + 2.0066666667 / 2) / 3), 8)
    expect(d.se).toBeLessThan(d.seUnpaired / 10)
  })

  // Student's t quantiles from a printed table (two-sided): df 2 at 95 % 4.303, df 4 at 95 % 2.776 and
  // at 99 % 4.604; p = 0.025 at df 4 is t = 3.495. Each planted effect sits just either side of one.
  it("judge a claim by a two-sided t test at the seeds' degrees of freedom, as a table of t quantiles says", () => {
    expect(verdictOf({ mean: 0.44, se: 0.1, n: 3 }, ">")).toBe("supported")
    expect(verdictOf({ mean: 0.42, se: 0.1, n: 3 }, ">")).toBe("inconclusive at this budget")
    expect(verdictOf({ mean: 0.44, se: 0.1, n: 3 }, "<")).toBe("contradicted")
    expect(verdictOf({ mean: 0.28, se: 0.1, n: 5 }, ">")).toBe("supported")
    expect(verdictOf({ mean: 0.27, se: 0.1, n: 5 }, ">")).toBe("inconclusive at this budget")
    expect(verdictOf({ mean: 0.47, se: 0.1, n: 5 }, ">", 0.99)).toBe("supported")
    expect(verdictOf({ mean: 0.45, se: 0.1, n: 5 }, ">", 0.99)).toBe("inconclusive at this budget")
    expect(critical(2, 0.95)).toBeCloseTo(4.303, 3)
    expect(critical(4, 0.99)).toBeCloseTo(4.604, 3)
    // No spread: an effect of exactly 0 is no evidence, any other is certain.
    expect(verdictOf({ mean: 0, se: 0, n: 3 }, ">")).toBe("inconclusive at this budget")
    expect(verdictOf({ mean: 0.1, se: 0, n: 3 }, ">")).toBe("supported")
  })

  it("draw no verdict from fewer than 3 seeds, however large the effect", () => {
    expect(verdictOf({ mean: 5, se: 0.01, n: 2 }, ">")).toBe("too few seeds")
    expect(verdictOf({ mean: 5, se: Number.NaN, n: 1 }, ">")).toBe("too few seeds")
  })

  it("correct several claims by Holm's step-down rule beside each claim's own verdict", () => {
    const claim = (t: number) => ({ effect: { mean: t * 0.1, se: 0.1, n: 5 }, direction: ">" as const })
    // df 4: t 5.0 has p < 0.01, t 3.9 has 0.01 < p < 0.025, t 3.3 has 0.025 < p < 0.05, t 2.9 has 0.04 < p < 0.05.
    const all = judgeClaims([claim(5.0), claim(3.9), claim(2.9)])
    expect(all.map((j) => j?.verdict)).toEqual(["supported", "supported", "supported"])
    // Thresholds 0.05/3, 0.05/2, 0.05: every step passes.
    expect(all.map((j) => j?.holm)).toEqual(["supported", "supported", "supported"])
    const stopped = judgeClaims([claim(2.9), claim(5.0), claim(3.3)])
    expect(stopped.map((j) => j?.verdict)).toEqual(["supported", "supported", "supported"])
    // 3.3 (p ≈ 0.03) fails 0.05/2, so it and every larger p stay inconclusive.
    expect(stopped.map((j) => j?.holm)).toEqual([
      "inconclusive at this budget",
      "supported",
      "inconclusive at this budget"
    ])
    const short = judgeClaims([{ ...claim(9), short: true }, claim(3.3)])
    expect(short.map((j) => j?.verdict)).toEqual(["too short a span", "supported"])
    // The short claim is not in the family: 3.3 alone is judged at 0.05.
    expect(short[1]?.holm).toBe("supported")
  })
})
