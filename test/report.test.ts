/**
 * The run report opened in a real browser (Debian's chromium, headless, through playwright-core):
 * its charts and sample grids must render. CI installs chromium (.ci/run); without it these skip.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { chromium } from "playwright-core"
import { beforeAll, describe, expect, it } from "vitest"
import { runPipeline } from "../kernel/run.ts"
import { flowGrpo } from "../pipelines/flow-grpo.ts"
import { openStream } from "../random/streams.ts"
import { writeReport } from "../report/report.ts"
import { TrajectoryTable } from "../schemas/trajectory.ts"
import { toParquet } from "../store/parquet.ts"

const CHROMIUM = "/usr/bin/chromium"
const haveChromium = fs.existsSync(CHROMIUM)

/** A run folder of an MNIST-shaped RL run: 2 groups × 3 members × 2 steps of 28×28 latents. */
const mnistLikeRun = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-report-"))
  const rows = 12
  const rng = openStream(["report"])
  const img = () => Float32Array.from({ length: rows * 784 }, () => rng.uniform() * 2 - 1)
  const table = TrajectoryTable.build(rows, {
    iteration: new Int32Array(rows),
    trajectory_id: Int32Array.from({ length: rows }, (_, i) => i >> 1),
    prompt_id: Int32Array.from({ length: rows }, (_, i) => (i >> 1) < 3 ? 3 : 7),
    prompt: Array.from({ length: rows }, (_, i) => ((i >> 1) < 3 ? "a handwritten 3" : "a handwritten 7")),
    group_id: Int32Array.from({ length: rows }, (_, i) => ((i >> 1) < 3 ? 0 : 1)),
    member: Int32Array.from({ length: rows }, (_, i) => (i >> 1) % 3),
    step: Int32Array.from({ length: rows }, (_, i) => i % 2),
    t: new Float64Array(rows).fill(0.5),
    t_next: new Float64Array(rows),
    latent: img(),
    next_latent: img(),
    x0_pred: img(),
    a: new Float64Array(rows).fill(1),
    b: new Float64Array(rows).fill(-0.5),
    std: new Float64Array(rows).fill(0.1),
    log_prob: new Float64Array(rows),
    reward: null,
    advantage: null
  }, { latent: [28, 28], next_latent: [28, 28], x0_pred: [28, 28] })
  fs.mkdirSync(path.join(dir, "trajectories"))
  fs.writeFileSync(path.join(dir, "trajectories/iter-000000.parquet"), toParquet(table))
  const metrics = [0, 1, 2].flatMap((i) => [
    { iteration: i, name: "reward_mean", value: -1 + 0.2 * i },
    { iteration: i, name: "reward_std", value: 0.5 },
    { iteration: i, name: "ratio_mean", value: 1 },
    { iteration: i, name: "ratio_min", value: 0.99 },
    { iteration: i, name: "ratio_max", value: 1.01 },
    { iteration: i, name: "clipfrac", value: 0.1 },
    { iteration: i, name: "approx_kl", value: 1e-6 },
    { iteration: i, name: "eval.gap.s4", value: -0.3 },
    { iteration: i, name: "eval.gap.s4.se", value: 0.05 },
    { iteration: i, name: "eval.improvement.s4", value: 0.1 * i },
    { iteration: i, name: "eval.improvement.s4.se", value: 0.02 },
    ...["fd", "judge", "diversity"].flatMap((q) => [
      { iteration: i, name: `eval.${q}.s4`, value: 10 - i },
      { iteration: i, name: `eval.${q}_base.s4`, value: 10 }
    ])
  ])
  fs.writeFileSync(path.join(dir, "metrics.jsonl"), metrics.map((m) => JSON.stringify(m)).join("\n") + "\n")
  fs.writeFileSync(
    path.join(dir, "manifest.json"),
    JSON.stringify({
      format: "etaflow.run/1",
      pipeline: "flow-grpo",
      config: { promptsPerIteration: 2, groupSize: 3, steps: 4 },
      seed: 0,
      versions: { etaflow: "test" },
      created_at: "2026-11-23T00:00:00Z",
      updated_at: "2026-11-23T00:00:00Z",
      status: "complete",
      iterations: 3,
      iterations_complete: 3
    })
  )
  return writeReport(dir)
}

const open = async (file: string) => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
  })
  const page = await browser.newPage()
  const requests: Array<string> = []
  page.on("request", (r) => requests.push(r.url()))
  await page.goto(`file://${file}`)
  return { browser, page, requests }
}

describe.skipIf(!haveChromium)("the run report in headless chromium", () => {
  let toyReport = ""
  beforeAll(async () => {
    process.env.ETAFLOW_CACHE = fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-report-cache-"))
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-report-run-")), "run")
    await Effect.runPromise(
      runPipeline(flowGrpo, {
        out: dir,
        progress: "none",
        set: {
          dataset: "double-ring",
          reward: "outer-ring",
          steps: "4",
          promptsPerIteration: "2",
          groupSize: "8",
          batchSize: "16",
          evalSteps: "4",
          evalSamplesPerPrompt: "16",
          evalEvery: "1",
          iterations: "2"
        }
      })
    )
    toyReport = path.join(dir, "report.html")
  }, 600_000)

  it("renders the curves and an image grid of whole prompt groups, with no network request", async () => {
    const { browser, page, requests } = await open(mnistLikeRun())
    expect(await page.locator("svg.chart polyline.series").count()).toBeGreaterThanOrEqual(8)
    const img = page.locator("img.samples")
    expect(await img.count()).toBe(1)
    // 2 groups as rows of 3 members, 56-pixel cells (28 × 2) with a 2-pixel gap.
    expect(
      await img.evaluate((el) => {
        const i = el as unknown as { complete: boolean; naturalWidth: number; naturalHeight: number }
        return [i.complete, i.naturalWidth, i.naturalHeight]
      })
    ).toEqual([true, 3 * 58, 2 * 58])
    expect(await page.locator("figcaption").first().textContent()).toContain("a handwritten 3")
    await page.screenshot({ path: path.join(os.tmpdir(), "etaflow-report.png"), fullPage: true })
    expect(requests.every((u) => u.startsWith("file:") || u.startsWith("data:"))).toBe(true)
    await browser.close()
  })

  it("plots FD, the judge and diversity per step count beside the base model's line", async () => {
    const { browser, page } = await open(mnistLikeRun())
    for (const title of ["Fréchet distance", "judge's class accuracy", "within-prompt diversity"]) {
      const chart = page.locator("svg.chart", { hasText: title })
      expect(await chart.locator("polyline.series").count()).toBe(2)
      expect(await chart.textContent()).toContain("base, 4 steps")
    }
    // Every chart's title inside its chart, as the browser lays it out (long ones once ran past both edges).
    const outside = await page.evaluate(`[...document.querySelectorAll("svg.chart")].flatMap((svg) => {
      const title = svg.querySelector("text.title")
      if (title === null) return []
      const box = title.getBBox()
      return box.x < 0 || box.x + box.width > Number(svg.getAttribute("width")) ? [title.textContent] : []
    })`)
    expect(outside).toEqual([])
    await browser.close()
  })

  it("is written at the end of a run, with a scatter of the toy's final samples", async () => {
    const { browser, page } = await open(toyReport)
    expect(await page.locator("svg.scatter circle").count()).toBeGreaterThan(16)
    expect(await page.locator("h1").textContent()).toContain("flow-grpo")
    await browser.close()
  })
})
