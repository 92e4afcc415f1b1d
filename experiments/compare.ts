/**
 * The comparison of an experiment folder, from its runs' metrics.jsonl and node timings (compute seconds
 * per iteration and accumulated, evaluation excluded): `comparison.parquet` (per arm,
 * metric and iteration: mean, s.e. across seeds, n; per non-reference arm: the paired difference from
 * the reference arm — the first — with its paired and unpaired s.e.), `comparison.md` (the last value
 * of every evaluation metric, and the differences), and `findings.md` (each claim's measured effect and
 * computed verdict). Rebuilt from the runs at any time (`etaflow experiment report`).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { readTimings } from "../kernel/iteration.ts"
import { readManifest, readMetrics } from "../kernel/run-folder.ts"
import { ComparisonTable } from "../schemas/comparison.ts"
import { atEqualLevel, atEqualSeconds, meanLevel } from "./curves.ts"
import type { ArmClaim, Claim } from "./experiment.ts"
import {
  type BySeed,
  critical,
  DEFAULT_CONFIDENCE,
  judgeClaims,
  type Judged,
  pairedDifference,
  summarize,
  type Summary
} from "./stats.ts"

export interface ExperimentRecord {
  readonly name: string
  readonly doc: string
  readonly arms: ReadonlyArray<{ readonly label: string }>
  readonly claims: ReadonlyArray<Claim>
  /** The claims' test confidence (absent: 0.95). */
  readonly confidence?: number
  readonly runs: ReadonlyArray<{ readonly arm: string; readonly seed: number; readonly dir: string }>
}

/** arm → metric → iteration → seed → value. */
export type Values = Map<string, Map<string, Map<number, Map<number, number>>>>

export const readRecord = (out: string): ExperimentRecord => {
  const file = path.join(out, "experiment.json")
  if (!fs.existsSync(file)) throw new Error(`${out} is not an experiment folder (no experiment.json)`)
  return JSON.parse(fs.readFileSync(file, "utf8")) as ExperimentRecord
}

/**
 * A run's compute seconds from its node timings (meta/timings.json): per iteration (`iteration_seconds`)
 * and accumulated (`compute_seconds`), evaluation excluded — the entries whose names start with "eval".
 */
export const computeSeconds = (dir: string): Array<{ iteration: number; name: string; value: number }> => {
  const rows: Array<{ iteration: number; name: string; value: number }> = []
  let total = 0
  for (const t of readTimings(dir, readManifest(dir).iterations_complete)) {
    const s = Object.entries(t.seconds).filter(([e]) => !e.startsWith("eval")).reduce((a, [, v]) => a + v, 0)
    total += s
    rows.push({ iteration: t.iteration, name: "iteration_seconds", value: s })
    rows.push({ iteration: t.iteration, name: "compute_seconds", value: total })
  }
  return rows
}

export const collect = (out: string, record: ExperimentRecord): Values => {
  const values: Values = new Map(record.arms.map((a) => [a.label, new Map()]))
  for (const run of record.runs) {
    const byMetric = values.get(run.arm)!
    const dir = path.join(out, run.dir)
    if (!fs.existsSync(path.join(dir, "manifest.json"))) continue
    for (const row of [...readMetrics(path.join(dir, "metrics.jsonl")), ...computeSeconds(dir)]) {
      const byIteration = byMetric.get(row.name) ?? new Map<number, Map<number, number>>()
      byMetric.set(row.name, byIteration)
      const bySeed = byIteration.get(row.iteration) ?? new Map<number, number>()
      byIteration.set(row.iteration, bySeed)
      bySeed.set(run.seed, row.value)
    }
  }
  return values
}

interface Row {
  readonly kind: "arm" | "difference"
  readonly arm: string
  readonly reference: string | null
  readonly metric: string
  readonly iteration: number
  readonly stats: Summary
  readonly seUnpaired: number
}

export const comparisonRows = (values: Values): Array<Row> => {
  const [reference, ...others] = [...values.keys()]
  const rows: Array<Row> = []
  for (const [arm, byMetric] of values) {
    for (const [metric, byIteration] of byMetric) {
      for (const [iteration, bySeed] of byIteration) {
        const stats = summarize([...bySeed.values()])
        rows.push({ kind: "arm", arm, reference: null, metric, iteration, stats, seUnpaired: Number.NaN })
        const ref = values.get(reference)?.get(metric)?.get(iteration)
        if (!others.includes(arm) || ref === undefined) continue
        const d = pairedDifference(bySeed, ref)
        if (d.n > 0) {
          rows.push({ kind: "difference", arm, reference, metric, iteration, stats: d, seUnpaired: d.seUnpaired })
        }
      }
    }
  }
  return rows
}

/** comparison.parquet's table of the rows. */
export const comparisonTable = (rows: ReadonlyArray<Row>) =>
  ComparisonTable.build(rows.length, {
    kind: rows.map((r) => r.kind),
    arm: rows.map((r) => r.arm),
    reference: rows.map((r) => r.reference),
    metric: rows.map((r) => r.metric),
    iteration: Int32Array.from(rows, (r) => r.iteration),
    mean: Float64Array.from(rows, (r) => r.stats.mean),
    se: Float64Array.from(rows, (r) => r.stats.se),
    se_unpaired: {
      values: Float64Array.from(rows, (r) => r.seUnpaired),
      valid: Uint8Array.from(rows, (r) => (r.kind === "difference" ? 1 : 0))
    },
    n: Int32Array.from(rows, (r) => r.stats.n)
  }, {})

const fmt = (s: Summary) => `${s.mean.toFixed(4)} ± ${Number.isFinite(s.se) ? s.se.toFixed(4) : "n/a"} (n=${s.n})`

/** The last iteration at which every seed of `bySeed`'s arm reported the metric. */
const lastOf = (byIteration: Map<number, BySeed> | undefined) =>
  byIteration === undefined ? undefined : Math.max(...byIteration.keys())

/**
 * A claim's effect: paired difference of two arms at the last common iteration, or last − first
 * evaluation of one arm — `short` when those are under a quarter of the run apart, too close to call
 * a change "over training".
 */
export const effectOf = (
  values: Values,
  c: Claim
): { effect: Summary; where: string; short?: true } | undefined => {
  const series = values.get(c.arm)?.get(c.metric)
  if (series === undefined) return undefined
  if ("over" in c) {
    const [first, last] = [Math.min(...series.keys()), Math.max(...series.keys())]
    const effect = pairedDifference(series.get(last)!, series.get(first)!)
    const where = `iteration ${last} − ${first}`
    return last - first < (last + 1) / 4 ? { effect, where, short: true } : { effect, where }
  }
  const other = values.get(c.than)?.get(c.metric)
  const common = [...series.keys()].filter((i) => other?.has(i)).sort((a, b) => a - b)
  if (other === undefined || common.length === 0) return undefined
  const arms = `${c.arm} − ${c.than}`
  if (c.at === "area") {
    const span = `iterations ${common[0]}–${common[common.length - 1]}`
    return {
      effect: pairedDifference(meanLevel(series, common), meanLevel(other, common)),
      where: `the learning curves' mean level over ${span} (${common.length} evaluations), ${arms}`
    }
  }
  if (c.at === "seconds") {
    const seconds = (arm: string) => values.get(arm)?.get("compute_seconds") ?? new Map<number, BySeed>()
    const eq = atEqualSeconds({ curve: series, seconds: seconds(c.arm) }, { curve: other, seconds: seconds(c.than) })
    const budget = summarize([...eq.budget.values()]).mean
    return {
      effect: pairedDifference(eq.a, eq.b),
      where: `equal compute seconds (the cheaper run's last evaluation, ${budget.toFixed(1)} s on average), ${arms}`
    }
  }
  if (c.at === "reach" || typeof c.at === "object") return levelEffect(values, c, c.at, arms)
  const at = common[common.length - 1]
  return { effect: pairedDifference(series.get(at)!, other.get(at)!), where: `iteration ${at}, ${arms}` }
}

/**
 * A claim read at a common level: the metric where `equal`'s metric first reaches the largest level both arms
 * reach, or (`reach`) the compute seconds each arm takes to reach the level of the metric the weaker one ends at.
 */
const levelEffect = (values: Values, c: ArmClaim, at: "reach" | { readonly equal: string }, arms: string) => {
  const curve = (arm: string, metric: string) => values.get(arm)?.get(metric) ?? new Map<number, BySeed>()
  const [x, y] = at === "reach" ? [c.metric, "compute_seconds"] : [at.equal, c.metric]
  const eq = atEqualLevel(
    { x: curve(c.arm, x), y: curve(c.arm, y) },
    { x: curve(c.than, x), y: curve(c.than, y) },
    at === "reach" ? "last" : "max"
  )
  if (eq.a.size === 0) return undefined
  const level = summarize([...eq.level.values()]).mean.toPrecision(4)
  return {
    effect: pairedDifference(eq.a, eq.b),
    where: at === "reach"
      ? `compute seconds to reach ${c.metric} = ${level} (the weaker arm's last level, on average), ${arms}`
      : `${at.equal} = ${level} (the largest level both arms reach, on average), ${arms}`
  }
}

/** Each claim's effect and its verdicts (its own test's and Holm's over the experiment's claims). */
export const judged = (record: ExperimentRecord, values: Values) => {
  const effects = record.claims.map((c) => effectOf(values, c))
  const verdicts = judgeClaims(
    effects.map((e, i) => (e === undefined ? undefined : { ...e, direction: record.claims[i].direction })),
    record.confidence ?? DEFAULT_CONFIDENCE
  )
  return record.claims.map((claim, i) => ({ claim, effect: effects[i], judged: verdicts[i] }))
}

const testText = (j: Judged, confidence: number) =>
  j.test.df < 1 ?
    "" :
    `; t = ${j.test.t.toFixed(2)}, df = ${j.test.df}, p = ${j.test.p.toPrecision(2)}, |t| > ${
      critical(j.test.df, confidence).toFixed(2)
    } needed`

/** findings.md: each claim's effect, test and verdict. */
export const findingsMarkdown = (record: ExperimentRecord, values: Values) => {
  const confidence = record.confidence ?? DEFAULT_CONFIDENCE
  const lines = [
    `# Findings of ${record.name}`,
    "",
    `Verdicts are computed from comparison.parquet by a two-sided paired t test across seeds at ${
      (confidence * 100).toFixed(0)
    } % confidence`,
    "(Student's t, df = seeds − 1): *supported* when the effect is significant in the claimed direction,",
    "*contradicted* when against it, *inconclusive at this budget* otherwise; under 3 seeds *too few seeds*,",
    "and a claim over training whose first and last evaluation are under a quarter of the run apart *too short",
    `a span*. Beside each, the verdict under Holm's correction over the experiment's ${record.claims.length} claims.`,
    ""
  ]
  for (const { claim: c, effect: e, judged: j } of judged(record, values)) {
    const claimed = "over" in c ?
      `${c.metric} of ${c.arm} ${c.direction === ">" ? "grows" : "shrinks"} over training`
      : `${c.metric}: ${c.arm} ${c.direction} ${c.than}`
    lines.push(
      e === undefined || j === undefined
        ? `- **${c.name}** (${claimed}): no data — the runs did not report ${c.metric}`
        : `- **${c.name}** (${claimed}): effect ${fmt(e.effect)} at ${e.where}${
          testText(j, confidence)
        } → **${j.verdict}** (Holm: ${j.holm})`
    )
  }
  return lines.join("\n") + "\n"
}

/** comparison.md: the last value of every metric per arm, and the paired differences. */
export const comparisonMarkdown = (record: ExperimentRecord, values: Values) => {
  const arms = [...values.keys()]
  const metrics = [...new Set(arms.flatMap((a) => [...values.get(a)!.keys()]))]
    .filter((m) => m.startsWith("eval.") && !m.endsWith(".se") && !m.endsWith("_se") || m === "reward_mean").sort()
  const cell = (arm: string, m: string) => {
    const series = values.get(arm)!.get(m)
    const at = lastOf(series)
    return at === undefined ? "—" : fmt(summarize([...series!.get(at)!.values()]))
  }
  const diff = (arm: string, m: string) => {
    const [a, b] = [values.get(arm)!.get(m), values.get(arms[0])!.get(m)]
    const at = lastOf(a)
    if (at === undefined || !b?.has(at)) return "—"
    const d = pairedDifference(a!.get(at)!, b.get(at)!)
    return `${fmt(d)}, unpaired s.e. ${Number.isFinite(d.seUnpaired) ? d.seUnpaired.toFixed(4) : "n/a"}`
  }
  const table = (
    header: Array<string>,
    rows: Array<Array<string>>
  ) => [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ]
  return [
    `# ${record.name}: comparison`,
    "",
    "Last reported value of each metric, mean ± s.e. across seeds (n seeds).",
    "",
    ...table(["metric", ...arms], metrics.map((m) => [m, ...arms.map((a) => cell(a, m))])),
    "",
    `Paired differences from ${arms[0]} (same seed: same prompts and evaluation noise).`,
    "",
    ...table(
      ["metric", ...arms.slice(1).map((a) => `${a} − ${arms[0]}`)],
      metrics.map((m) => [
        m,
        ...arms.slice(1).map((a) => diff(a, m))
      ])
    )
  ].join("\n") + "\n"
}

/** What `etaflow inspect` shows of an experiment folder: its runs with their status, and the findings. */
export const describeExperiment = (out: string, statusOf: (dir: string) => string) => {
  const record = readRecord(out)
  const runs = record.runs.map((r) => ({ ...r, status: statusOf(path.join(out, r.dir)) }))
  const findingsFile = path.join(out, "findings.md")
  return {
    name: record.name,
    doc: record.doc,
    runs,
    findings: fs.existsSync(findingsFile)
      ? fs.readFileSync(findingsFile, "utf8").split("\n").filter((l) => l.startsWith("- "))
      : []
  }
}
