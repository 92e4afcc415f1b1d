/**
 * The run folder's files outside the commit: the manifest (read, written), the writer's lock, the
 * metrics log, and the clean-up of what an uncommitted iteration left behind.
 */
import { Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Manifest, type MetricRow, MetricsTable } from "../schemas/manifest.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { toParquet } from "../store/parquet.ts"
import { UsageError } from "./errors.ts"

export const iterFile = (i: number) => `iter-${String(i).padStart(6, "0")}`

export const now = () => new Date().toISOString()
const decodeManifest = Schema.decodeUnknownSync(Manifest)

export const timestamp = () => now().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")

export const readManifest = (dir: string): Manifest => {
  const file = path.join(dir, "manifest.json")
  if (!fs.existsSync(file)) throw new UsageError({ message: `${dir} is not a run folder: ${file} is missing` })
  try {
    return decodeManifest(JSON.parse(fs.readFileSync(file, "utf8")))
  } catch (e) {
    throw new UsageError({ message: `${file}: not a valid etaflow manifest (${e instanceof Error ? e.message : e})` })
  }
}

/** Takes the run folder's lock; a live writer makes this a usage error, a dead one's lock is replaced. */
export const acquireLock = (dir: string) => {
  const lock = path.join(dir, ".lock")
  if (fs.existsSync(lock)) {
    const pid = Number(fs.readFileSync(lock, "utf8").trim())
    let alive = false
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
      try {
        process.kill(pid, 0)
        alive = true
      } catch (e) {
        alive = (e as NodeJS.ErrnoException).code === "EPERM"
      }
    }
    if (alive) {
      throw new UsageError({ message: `${dir} is being written by process ${pid} (lock ${lock}); not touching it` })
    }
  }
  writeFileAtomic(lock, String(process.pid))
  return () => fs.rmSync(lock, { force: true })
}

/** Removes what an uncommitted iteration (≥ `complete`) may have left behind. */
export const cleanUncommitted = (dir: string, complete: number, metricsFile: string) => {
  const isLater = (name: string) => {
    const m = /^iter-(\d{6})/.exec(name)
    return m !== null && Number(m[1]) >= complete
  }
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name)
      if (entry.name.endsWith(".tmp") || isLater(entry.name)) fs.rmSync(p, { recursive: true, force: true })
      else if (entry.isDirectory()) walk(p)
    }
  }
  walk(dir)
  if (fs.existsSync(metricsFile)) {
    const kept = fs.readFileSync(metricsFile, "utf8").split("\n").filter((line) => {
      if (line.trim() === "") return false
      try {
        return (JSON.parse(line) as MetricRow).iteration < complete
      } catch {
        return false // a line cut by a kill
      }
    })
    writeFileAtomic(metricsFile, kept.map((l) => l + "\n").join(""))
  }
}

export const manifestText = (m: Manifest) => JSON.stringify(m, null, 2) + "\n"

export const metricsParquet = (rows: ReadonlyArray<MetricRow>) =>
  toParquet(MetricsTable.build(rows.length, {
    iteration: Int32Array.from(rows, (r) => r.iteration),
    name: rows.map((r) => r.name),
    value: Float64Array.from(rows, (r) => r.value),
    node: rows.map((r) => r.node ?? null)
  }, {}))

export const readMetrics = (file: string): Array<MetricRow> =>
  fs.existsSync(file)
    ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as MetricRow)
    : []
