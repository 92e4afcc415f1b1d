/**
 * experiment.html: one self-contained page per experiment — every arm's curve overlaid with its ±s.e.
 * band (across seeds) against iteration and against compute seconds, the evaluation at each step count,
 * the findings and the last values with paired differences.
 */
import { lineChart, type Series } from "../report/svg.ts"
import type { ExperimentRecord, Values } from "./compare.ts"
import { judged } from "./compare.ts"
import { pairedDifference, summarize } from "./stats.ts"

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** One arm's metric over iterations: mean and s.e. across seeds; x is the iteration or mean compute seconds. */
const seriesOf = (values: Values, arm: string, metric: string, against: "iteration" | "seconds"): Series => {
  const byIteration = values.get(arm)?.get(metric) ?? new Map<number, Map<number, number>>()
  const seconds = values.get(arm)?.get("compute_seconds")
  const its = [...byIteration.keys()].sort((a, b) => a - b).filter((i) => against === "iteration" || seconds?.has(i))
  const stats = its.map((i) => summarize([...byIteration.get(i)!.values()]))
  return {
    name: arm,
    x: its.map((i) => (against === "iteration" ? i : summarize([...seconds!.get(i)!.values()]).mean)),
    y: stats.map((s) => s.mean),
    err: stats.map((s) => (Number.isFinite(s.se) ? s.se : 0))
  }
}

/** Improvement at each evaluated step count, at each arm's last evaluation. */
const byStepCount = (values: Values, arms: ReadonlyArray<string>, steps: ReadonlyArray<number>): Array<Series> =>
  arms.map((arm) => {
    const points = steps.flatMap((s) => {
      const series = values.get(arm)?.get(`eval.improvement.s${s}`)
      if (series === undefined) return []
      const at = Math.max(...series.keys())
      return [{ s, stats: summarize([...series.get(at)!.values()]) }]
    })
    return {
      name: arm,
      x: points.map((p) => p.s),
      y: points.map((p) => p.stats.mean),
      err: points.map((p) => (Number.isFinite(p.stats.se) ? p.stats.se : 0))
    }
  })

const fmt = (mean: number, se: number) => `${mean.toFixed(4)} ± ${Number.isFinite(se) ? se.toFixed(4) : "n/a"}`

const lastTable = (values: Values, arms: ReadonlyArray<string>, metrics: ReadonlyArray<string>) => {
  const cell = (arm: string, m: string) => {
    const series = values.get(arm)?.get(m)
    if (series === undefined) return "—"
    const at = Math.max(...series.keys())
    const s = summarize([...series.get(at)!.values()])
    const ref = values.get(arms[0])?.get(m)?.get(at)
    const diff = arm === arms[0] || ref === undefined ? "" : (() => {
      const d = pairedDifference(series.get(at)!, ref)
      return `<br><small>Δ ${fmt(d.mean, d.se)} (unpaired ± ${d.seUnpaired.toFixed(4)})</small>`
    })()
    return `${fmt(s.mean, s.se)} <small>(n=${s.n})</small>${diff}`
  }
  const head = `<tr><th>metric</th>${arms.map((a) => `<th>${esc(a)}</th>`).join("")}</tr>`
  const rows = metrics.map((m) => `<tr><td>${esc(m)}</td>${arms.map((a) => `<td>${cell(a, m)}</td>`).join("")}</tr>`)
  return `<table class="last">${head}${rows.join("")}</table>`
}

/** The metrics drawn as learning curves: rewards, gaps, and the testbeds' measures of the known optimum (§13). */
const HEADLINE =
  /^eval\.(improvement|gap|normalised|hit|path_kl|diversity_target|fd_target|kl_q|outside_mass|gold)\.s\d+$/

/** One arm's curve of metric y against metric x (means across seeds at each evaluation both report). */
const frontOf = (values: Values, arm: string, x: string, y: string, fx: (v: number) => number = (v) => v): Series => {
  const [xs, ys] = [values.get(arm)?.get(x), values.get(arm)?.get(y)]
  const its = [...(ys?.keys() ?? [])].filter((i) => xs?.has(i)).sort((a, b) => a - b)
  return {
    name: arm,
    x: its.map((i) => fx(summarize([...xs!.get(i)!.values()]).mean)),
    y: its.map((i) => summarize([...ys!.get(i)!.values()]).mean)
  }
}

/**
 * Over-optimisation fronts, where the runs trained against a proxy (they report the gold, §13.4): each gold
 * (the judge's score; on tilt the distance to the real digits of T) against the proxy reward and against
 * √(path KL), Gao et al.'s axes (arXiv 2210.10760).
 */
const frontCharts = (values: Values, arms: ReadonlyArray<string>, metrics: ReadonlyArray<string>) =>
  metrics.filter((m) => /^eval\.gold\.s\d+$/.test(m)).flatMap((gold) => {
    const s = gold.slice("eval.gold.".length)
    const golds = [gold, `eval.fd_target.${s}`].filter((m) => metrics.includes(m))
    return golds.flatMap((g) => [
      {
        file: `front-${g}-vs-proxy.svg`,
        svg: lineChart(
          `${g} against the proxy's ODE improvement`,
          arms.map((a) => frontOf(values, a, `eval.improvement.${s}`, g)),
          "proxy improvement"
        )
      },
      {
        file: `front-${g}-vs-sqrt-kl.svg`,
        svg: lineChart(
          `${g} against √(path KL)`,
          arms.map((a) => frontOf(values, a, `eval.path_kl.${s}`, g, Math.sqrt)),
          "√KL"
        )
      }
    ])
  })

/**
 * Every headline metric's learning curves (mean ± s.e. band per arm, by iteration and by compute seconds),
 * and the improvement by step count: each an SVG with the file name it is also written under.
 */
export const curveCharts = (values: Values): Array<{ readonly file: string; readonly svg: string }> => {
  const arms = [...values.keys()]
  const metrics = [...new Set(arms.flatMap((a) => [...values.get(a)!.keys()]))].sort()
  const headline = metrics.filter((m) => HEADLINE.test(m) || m === "reward_mean")
  const charts = headline.flatMap((m) => [
    {
      file: `${m}-by-iteration.svg`,
      svg: lineChart(`${m} by iteration`, arms.map((a) => seriesOf(values, a, m, "iteration")))
    },
    {
      file: `${m}-by-seconds.svg`,
      svg: lineChart(`${m} by compute seconds`, arms.map((a) => seriesOf(values, a, m, "seconds")), "compute seconds")
    }
  ])
  const steps = [
    ...new Set(
      headline.filter((m) => m.startsWith("eval.improvement.")).flatMap((m) => /\.s(\d+)$/.exec(m)?.[1] ?? []).map(
        Number
      )
    )
  ].sort((a, b) => a - b)
  if (steps.length > 1) {
    const svg = lineChart("ODE improvement by step count (last evaluation)", byStepCount(values, arms, steps), "steps")
    charts.push({ file: "improvement-by-steps.svg", svg })
  }
  return [...charts, ...frontCharts(values, arms, metrics)]
}

export const experimentHtml = (record: ExperimentRecord, values: Values): string => {
  const arms = [...values.keys()]
  const metrics = [...new Set(arms.flatMap((a) => [...values.get(a)!.keys()]))].sort()
  const headline = metrics.filter((m) => HEADLINE.test(m) || m === "reward_mean")
  const charts = curveCharts(values).map((c) => c.svg)
  const findings = judged(record, values).map(({ claim: c, effect: e, judged: j }) => {
    const effect = e === undefined ? "" : `: ${fmt(e.effect.mean, e.effect.se)} (n=${e.effect.n}) at ${esc(e.where)}`
    const holm = j === undefined ? "" : ` <small>(Holm: ${j.holm})</small>`
    return `<li class="claim"><b>${esc(c.name)}</b>${effect} → <b class="verdict">${
      j?.verdict ?? "no data"
    }</b>${holm}</li>`
  })
  return [
    "<!doctype html><html><head><meta charset=\"utf-8\">",
    `<title>${esc(record.name)}</title>`,
    "<style>body{font-family:sans-serif;margin:1.5em}svg.chart{margin:4px}table{border-collapse:collapse}",
    "td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;vertical-align:top}</style></head><body>",
    `<h1>${esc(record.name)}</h1><p>${esc(record.doc)}</p>`,
    `<p>Arms: ${arms.map(esc).join(", ")}; seeds ${record.runs.length / Math.max(arms.length, 1)} per arm. `,
    "Bands are ± one standard error across seeds; same seed, same prompts and evaluation noise.</p>",
    `<h2>Findings</h2><ul>${findings.join("") || "<li>no claims</li>"}</ul>`,
    `<h2>Curves</h2><div>${charts.join("")}</div>`,
    `<h2>Last values</h2>${lastTable(values, arms, [...headline, "compute_seconds"])}`,
    "</body></html>\n"
  ].join("")
}
