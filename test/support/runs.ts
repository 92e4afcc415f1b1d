/** Shared test helpers: temporary run folders, an isolated model cache, metrics, and toy RL settings. */
import type { Console } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A new empty temporary directory. */
export const tempDir = (label: string): string => fs.mkdtempSync(path.join(os.tmpdir(), `etaflow-${label}-`))

/** A console whose `error` lines go to `lines` (what a run warns on stderr), the rest to the real console. */
export const capturing = (lines: Array<string>): Console.Console => ({
  ...globalThis.console,
  error: (...args: ReadonlyArray<unknown>) => void lines.push(args.join(" "))
})

/** A run folder path that does not exist yet, inside a new temporary directory. */
export const tempRun = (label = "run"): string => path.join(tempDir(label), "run")

/** Gives the calling test file a model cache of its own, so tests never share trained models with `runs/`. */
export const isolateCache = (label: string): string => (process.env.ETAFLOW_CACHE = tempDir(`${label}-cache`))

export interface MetricLine {
  readonly iteration: number
  readonly name: string
  readonly value: number
  readonly node?: string
}

/** The rows of a run's `metrics.jsonl`. */
export const metricLines = (dir: string): Array<MetricLine> =>
  fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").filter((l) => l !== "").map((l) =>
    JSON.parse(l) as MetricLine
  )

/** One metric's rows, in iteration order. */
export const metricSeries = (dir: string, name: string): Array<MetricLine> =>
  metricLines(dir).filter((r) => r.name === name)

/** Each metric's last value. */
export const lastMetrics = (dir: string): Record<string, number> =>
  Object.fromEntries(metricLines(dir).map((r) => [r.name, r.value]))

/** The text of a run's `metrics.jsonl` (for bit-for-bit comparisons). */
export const metricsText = (dir: string): string => fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8")

/** RL settings for the 2-D double ring with the outer-ring reward: small enough for seconds per run. */
export const toyRl = {
  dataset: "double-ring",
  reward: "outer-ring",
  steps: "6",
  promptsPerIteration: "4",
  groupSize: "16",
  batchSize: "16",
  lr: "1e-3",
  evalSteps: "6",
  evalSamplesPerPrompt: "256",
  evalEvery: "100"
} as const
