/**
 * `report.html` of a run folder: reward curves (mean ± standard error), the SDE − ODE gap and the
 * improvement over the base model per evaluation step count, ratio / clipfrac / KL diagnostics,
 * sample grids of the first and last iteration with whole prompt groups side by side (MNIST images;
 * 2-D scatter for toys), and the run config. One self-contained file: inline SVG and PNG data URIs.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { latentToPixels } from "../data/mnist.ts"
import type { Manifest, MetricRow } from "../schemas/manifest.ts"
import { TrajectoryTable } from "../schemas/trajectory.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { storedFiles } from "../store/integrity.ts"
import { fromParquet } from "../store/parquet.ts"
import { diskUse, odeGrids, type Read } from "./eval-grids.ts"
import { grayPng, tile } from "./png.ts"
import { lineChart, scatter, type Series } from "./svg.ts"

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

const series = (rows: ReadonlyArray<MetricRow>, name: string, label = name, errName?: string, errScale = 1): Series => {
  const pts = rows.filter((r) => r.name === name)
  const err = errName === undefined
    ? undefined
    : new Map(rows.filter((r) => r.name === errName).map((r) => [r.iteration, r.value * errScale]))
  return {
    name: label,
    x: pts.map((r) => r.iteration),
    y: pts.map((r) => r.value),
    ...(err ? { err: pts.map((r) => err.get(r.iteration) ?? 0) } : {})
  }
}

/** The final latents column (on the last step's rows; version-1 files have it on every row). */
const finalLatents = (v: Float32Array | { values: Float32Array } | null): Float32Array =>
  v === null ? new Float32Array(0) : v instanceof Float32Array ? v : v.values

/** Final samples of one iteration's trajectories, grouped by group id. */
const samplesOf = (read: Read, file: string) => {
  const { rows, columns: c, shapes } = TrajectoryTable.read(fromParquet(read(file), file), file)
  const shape = shapes.latent
  const d = shape.reduce((a, b) => a * b, 1)
  const last = c.step.reduce((m, v) => Math.max(m, v), 0)
  const groups = new Map<number, Array<{ prompt: string | null; x: Float32Array }>>()
  for (let i = 0; i < rows; i++) {
    if (c.step[i] !== last) continue
    const g = groups.get(c.group_id[i]) ?? []
    g.push({
      prompt: c.prompt === null ? null : c.prompt[i],
      x: finalLatents(c.next_latent).slice(i * d, (i + 1) * d)
    })
    groups.set(c.group_id[i], g)
  }
  return { shape, groups: [...groups.values()] }
}

const sampleGrid = (read: Read, file: string, iteration: number): string => {
  const { shape, groups } = samplesOf(read, file)
  if (shape.length === 2) {
    // One row per prompt group, its members side by side.
    const shown = groups.slice(0, 10)
    const cols = Math.min(12, Math.max(...shown.map((g) => g.length)))
    const images = shown.flatMap((g) =>
      Array.from({ length: cols }, (_, k) => (g[k]?.x ?? new Float32Array(shape[0] * shape[1])).map(latentToPixels))
    )
    const { pixels, width, height } = tile(images, shape[0], cols)
    const labels = shown.map((g) => esc(g[0].prompt ?? "")).join(" · ")
    return `<figure><img class="samples" alt="samples of iteration ${iteration}" src="data:image/png;base64,${
      grayPng(pixels, width, height).toString("base64")
    }"/><figcaption>iteration ${iteration}: rows are prompt groups (${labels})</figcaption></figure>`
  }
  return `<figure>${
    scatter(
      `iteration ${iteration}: final samples by group`,
      groups.slice(0, 8).map((g, k) => ({
        name: `group ${k}`,
        x: g.map((s) => s.x[0]),
        y: g.map((s) => s.x[1])
      }))
    )
  }</figure>`
}

/**
 * What each evaluation measures beside the reward, where the run reports it: sample quality (MNIST), the
 * testbeds' distance to their known optimum (tilt, gmm25; docs/algorithms.md §13) and the path KL.
 */
const QUALITY: ReadonlyArray<readonly [string, string]> = [
  ["fd", "Fréchet distance of ODE samples to real test digits (classifier features; lower is better)"],
  ["judge", "judge's class accuracy of ODE samples (a held-out classifier; diverging from the reward = hacking)"],
  ["diversity", "within-prompt diversity of ODE samples (mean pairwise feature distance)"],
  ["normalised", "normalised ODE reward (r − r_base)/(r_target − r_base): 1 is the known optimum's reward"],
  ["hit", "share of ODE samples the judge calls a target digit (tilt)"],
  ["fd_target", "Fréchet distance of ODE samples to the real target digits (lower is better)"],
  ["diversity_target", "diversity of ODE samples relative to the real target digits' (1 = as varied)"],
  ["outside_mass", "share of ODE samples outside every mode of q (gmm25; q: 0.011)"],
  ["kl_q", "KL over q's mode cells from the ODE samples to q (gmm25; a lower bound)"],
  ["path_kl", "KL of the SDE sampling path from the base's (reward against √KL: over-optimisation)"],
  ["gold", "gold: the held-out judge's score of ODE samples for the proxy's task (proxy runs, §13.4)"]
]

const qualityCharts = (rows: ReadonlyArray<MetricRow>, evalSteps: ReadonlyArray<string>, trained: string) =>
  QUALITY.flatMap(([metric, title]) => {
    const steps = evalSteps.filter((s) => rows.some((r) => r.name === `eval.${metric}.s${s}`))
    if (steps.length === 0) return []
    const base = rows.some((r) => r.name === `eval.${metric}_base.s${trained}`)
    return [lineChart(title, [
      ...steps.map((s) => series(rows, `eval.${metric}.s${s}`, `${s} steps`)),
      ...(base ? [series(rows, `eval.${metric}_base.s${trained}`, `base, ${trained} steps`)] : [])
    ])]
  })

/** Every learning curve a run reports: training reward, gap and improvement, quality, the update's ratios. */
const curveCharts = (rows: ReadonlyArray<MetricRow>, manifest: Manifest): Array<string> => {
  const charts: Array<string> = []
  const trajectories = Number(manifest.config.promptsPerIteration ?? 1) * Number(manifest.config.groupSize ?? 1)
  if (rows.some((r) => r.name === "reward_mean")) {
    const rewardNames = [...new Set(rows.map((r) => r.name).filter((n) => /^reward\..*_mean$/.test(n)))]
    charts.push(lineChart("training reward (mean ± s.e.)", [
      series(rows, "reward_mean", "reward (weighted)", "reward_std", 1 / Math.sqrt(trajectories)),
      ...rewardNames.map((n) => series(rows, n, n.slice(7, -5)))
    ]))
  }
  const evalSteps = [
    ...new Set(rows.map((r) => /^eval\.gap\.s(\d+)$/.exec(r.name)?.[1]).filter((s): s is string => s !== undefined))
  ].sort((a, b) => Number(a) - Number(b))
  const withSe = (m: string) =>
    evalSteps.map((s) => series(rows, `eval.${m}.s${s}`, `${s} steps`, `eval.${m}.s${s}.se`))
  if (evalSteps.length > 0) {
    charts.push(lineChart("reward gap SDE − ODE (± s.e.)", withSe("gap")))
    charts.push(lineChart("ODE improvement over the base (± s.e.)", withSe("improvement")))
  }
  charts.push(...qualityCharts(rows, evalSteps, String(manifest.config.steps ?? "")))
  if (rows.some((r) => r.name === "ratio_mean")) {
    const named = (names: ReadonlyArray<readonly [string, string]>) => names.map(([m, label]) => series(rows, m, label))
    charts.push(
      lineChart("importance ratio", named([["ratio_mean", "mean"], ["ratio_min", "min"], ["ratio_max", "max"]]))
    )
    charts.push(
      lineChart(
        "clipfrac and approx KL",
        named([["clipfrac", "clipfrac"], ["approx_kl", "approx_kl"], ["kl", "KL to base"]])
      )
    )
  }
  return charts
}

export const writeReport = (dir: string): string => {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as Manifest
  // The samples drawn come from stored Parquet files, each checked against its recorded hash first.
  const stored = storedFiles(dir, manifest.iterations_complete)
  const metricsFile = path.join(dir, "metrics.jsonl")
  const rows: Array<MetricRow> = fs.existsSync(metricsFile)
    ? fs.readFileSync(metricsFile, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) =>
      JSON.parse(l) as MetricRow
    )
    : []
  const charts = curveCharts(rows, manifest)
  const trajDir = path.join(dir, "trajectories")
  const files = fs.existsSync(trajDir) ? fs.readdirSync(trajDir).filter((f) => f.endsWith(".parquet")).sort() : []
  const grids = [...new Set([files[0], files.at(-1)])].filter((f): f is string => f !== undefined)
    .map((f) => sampleGrid(stored.read, path.join(trajDir, f), Number(/iter-(\d+)/.exec(f)![1])))
  const lastIteration = rows.reduce((m, r) => Math.max(m, r.iteration), -1)
  const lastMetrics = rows.filter((r) => r.iteration === lastIteration && !r.name.endsWith(".se"))
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>etaflow — ${esc(manifest.pipeline)} — ${
    esc(path.basename(dir))
  }</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:8px 0}
img.samples{image-rendering:pixelated;border:1px solid #ccc}
table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}</style></head>
<body>
<h1>${esc(manifest.pipeline)} · ${esc(path.basename(dir))}</h1>
<p>status <b>${
    esc(manifest.status)
  }</b>, iterations ${manifest.iterations_complete}/${manifest.iterations}, seed ${manifest.seed}, created ${
    esc(manifest.created_at)
  }${
    manifest.stopped === undefined
      ? ""
      : `; stopped by stopWhen after iteration ${manifest.stopped.iteration}: ${esc(manifest.stopped.reason)}`
  }</p>
<h2>Curves</h2><div class="charts">${charts.join("\n")}</div>
<h2>ODE samples: base vs fine-tuned</h2><div class="grids">${
    odeGrids(dir, rows, Number(manifest.config.steps ?? 0), stored.read).join("\n") ||
    "<p>no evaluation samples stored</p>"
  }</div>
<h2>Training samples (SDE)</h2><div class="grids">${grids.join("\n") || "<p>no trajectories stored</p>"}</div>
<h2>Last metrics (iteration ${lastIteration})</h2><table>${
    lastMetrics.map((r) => `<tr><td>${esc(r.name)}</td><td>${Number(r.value.toPrecision(5))}</td></tr>`).join("")
  }</table>
<h2>Disk use</h2>${diskUse(dir)}
<h2>Config</h2><table>${
    Object.entries(manifest.config).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(JSON.stringify(v))}</td></tr>`)
      .join("")
  }</table>
<p>versions: ${esc(Object.entries(manifest.versions).map(([k, v]) => `${k} ${v}`).join(", "))}</p>
</body></html>
`
  const out = path.join(dir, "report.html")
  writeFileAtomic(out, html)
  return out
}
