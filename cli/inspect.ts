/**
 * `etaflow inspect <run-dir | experiment-dir | file.parquet>`: schema, row counts and last metrics; for
 * an experiment, its runs' status and its findings.
 */
import * as arrow from "apache-arrow"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { describeExperiment } from "../experiments/compare.ts"
import { runStatus } from "../experiments/run.ts"
import { StoreError, UsageError } from "../kernel/errors.ts"
import { shapeOf } from "../schemas/columns.ts"
import type { Manifest, MetricRow, RunInfo } from "../schemas/manifest.ts"
import { messageOf } from "../schemas/message.ts"
import { parquetSummary } from "../store/parquet.ts"

interface FileReport {
  readonly file: string
  readonly rows: number
  readonly columns: ReadonlyArray<{ name: string; type: string; nullable: boolean; shape?: ReadonlyArray<number> }>
  /** How to read the table's layout, where it needs saying. */
  readonly note?: string
}

/** Trajectory tables from version 2 store every state once; this says how to get a step's pair back. */
const PAIRS = "every state once: x_{k+1} is the next row's latent " +
  "(lead(latent) over (partition by iteration, trajectory_id order by step)); next_latent holds x_N on the last step"

const describeFile = async (file: string): Promise<FileReport> => {
  const { rows, schema } = await parquetSummary(new Uint8Array(fs.readFileSync(file)), file)
  const trajectories = schema.metadata.get("etaflow.table") === "trajectory" &&
    Number(schema.metadata.get("etaflow.table_version") ?? 1) >= 2
  return {
    file,
    rows,
    ...(trajectories ? { note: PAIRS } : {}),
    columns: schema.fields.map((f) => ({
      name: f.name,
      type: arrow.DataType.isFixedSizeList(f.type)
        ? `float32[${shapeOf(f, file).join(",")}]`
        : String(f.type).toLowerCase(),
      nullable: f.nullable,
      ...(arrow.DataType.isFixedSizeList(f.type) ? { shape: shapeOf(f, file) } : {})
    }))
  }
}

const parquetFiles = (dir: string): Array<string> =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir).filter((f) => f.endsWith(".parquet")).sort().map((f) => path.join(dir, f))
    : []

const inspectRun = async (dir: string) => {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as Manifest
  const infoFile = path.join(dir, "meta/info.json")
  const info = fs.existsSync(infoFile) ? (JSON.parse(fs.readFileSync(infoFile, "utf8")) as RunInfo) : undefined
  const outputs: Record<string, { files: number; rows: number; last: FileReport | undefined }> = {}
  for (const [entry, out] of Object.entries(info?.outputs ?? {})) {
    const target = path.join(dir, out.file)
    const files = target.endsWith(".parquet") ? (fs.existsSync(target) ? [target] : []) : parquetFiles(target)
    const reports = await Promise.all(files.map(describeFile))
    outputs[entry] = { files: files.length, rows: reports.reduce((a, r) => a + r.rows, 0), last: reports.at(-1) }
  }
  const metricsFile = path.join(dir, "metrics.jsonl")
  const metrics = fs.existsSync(metricsFile)
    ? fs.readFileSync(metricsFile, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) =>
      JSON.parse(l) as MetricRow
    )
    : []
  const lastIteration = metrics.reduce((m, r) => Math.max(m, r.iteration), -1)
  // RL runs: the evaluations at the training step count — ODE reward, improvement and gap trend.
  const steps = manifest.config.steps
  const at = (name: string, iteration: number) =>
    metrics.find((r) => r.name === name && r.iteration === iteration)?.value
  const evaluations = [
    ...new Set(metrics.filter((r) => r.name === `eval.ode.s${steps}.reward_mean`).map((r) => r.iteration))
  ].map((iteration) => ({
    iteration,
    ode_reward: at(`eval.ode.s${steps}.reward_mean`, iteration),
    improvement: at(`eval.improvement.s${steps}`, iteration),
    improvement_se: at(`eval.improvement.s${steps}.se`, iteration),
    gap: at(`eval.gap.s${steps}`, iteration),
    gap_se: at(`eval.gap.s${steps}.se`, iteration)
  }))
  const best = evaluations.reduce<(typeof evaluations)[number] | undefined>(
    (b, e) => (b === undefined || (e.ode_reward ?? -Infinity) > (b.ode_reward ?? -Infinity) ? e : b),
    undefined
  )
  return {
    evaluations,
    best_evaluation: best,
    dir,
    pipeline: manifest.pipeline,
    status: manifest.status,
    seed: manifest.seed,
    iterations: manifest.iterations,
    iterations_complete: manifest.iterations_complete,
    created_at: manifest.created_at,
    config: manifest.config,
    ...(manifest.error === undefined ? {} : { error: manifest.error }),
    outputs,
    last_metrics: Object.fromEntries(
      metrics.filter((r) => r.iteration === lastIteration).map((r) => [r.name, r.value])
    ),
    last_metrics_iteration: lastIteration
  }
}

const renderFile = (r: FileReport, indent = "") =>
  [
    `${indent}${r.file}: ${r.rows} rows`,
    ...r.columns.map((c) => `${indent}  ${c.name}: ${c.type}${c.nullable ? " (nullable)" : ""}`),
    ...(r.note === undefined ? [] : [`${indent}  (${r.note})`])
  ].join("\n")

const renderRun = (r: Awaited<ReturnType<typeof inspectRun>>) => {
  const lines = [
    `run ${r.dir}`,
    `  pipeline ${r.pipeline}, status ${r.status}, iterations ${r.iterations_complete}/${r.iterations}, ` +
    `seed ${r.seed}, created ${r.created_at}`,
    `  config ${JSON.stringify(r.config)}`
  ]
  if ("error" in r) lines.push(`  error: ${r.error}`)
  for (const [entry, o] of Object.entries(r.outputs)) {
    lines.push(`output ${entry}: ${o.files} file(s), ${o.rows} rows in all`)
    if (o.last !== undefined) lines.push(renderFile(o.last, "  "))
  }
  if (r.evaluations.length > 0) {
    const f = (v: number | undefined) => (v === undefined ? "—" : v.toPrecision(4))
    lines.push(
      `evaluations at the training step count (ODE reward, improvement over base ± s.e., SDE − ODE gap ± s.e.):`
    )
    for (const e of r.evaluations) {
      lines.push(
        `  iteration ${e.iteration}: ${f(e.ode_reward)}  improvement ${f(e.improvement)} ± ${
          f(e.improvement_se)
        }  gap ${f(e.gap)} ± ${f(e.gap_se)}`
      )
    }
    if (r.best_evaluation !== undefined) lines.push(`  best: iteration ${r.best_evaluation.iteration}`)
  }
  if (r.last_metrics_iteration >= 0) {
    lines.push(`metrics of iteration ${r.last_metrics_iteration}:`)
    for (const [k, v] of Object.entries(r.last_metrics)) lines.push(`  ${k} = ${v}`)
  }
  return lines.join("\n")
}

export const inspect = (target: string, json: boolean) =>
  Effect.tryPromise({
    try: async () => {
      if (!fs.existsSync(target)) throw new UsageError({ message: `inspect: ${target} does not exist` })
      if (fs.statSync(target).isDirectory()) {
        if (fs.existsSync(path.join(target, "experiment.json"))) {
          const e = describeExperiment(target, runStatus)
          return json ? JSON.stringify(e, null, 2) : [
            `experiment ${e.name}: ${e.doc}`,
            ...e.runs.map((r) => `  ${r.dir.padEnd(32)} ${r.status}`),
            ...(e.findings.length > 0 ? ["findings:", ...e.findings.map((f) => `  ${f}`)] : [])
          ].join("\n")
        }
        if (!fs.existsSync(path.join(target, "manifest.json"))) {
          throw new UsageError({ message: `inspect: ${target} is not a run folder (no manifest.json)` })
        }
        const r = await inspectRun(target)
        return json ? JSON.stringify(r, null, 2) : renderRun(r)
      }
      if (!target.endsWith(".parquet")) {
        throw new UsageError({ message: `inspect: ${target} is neither a run folder nor a .parquet file` })
      }
      const r = await describeFile(target)
      return json ? JSON.stringify(r, null, 2) : renderFile(r)
    },
    catch: (e) => (e instanceof UsageError
      ? e
      : new StoreError({ file: target, message: messageOf(e) }))
  })
