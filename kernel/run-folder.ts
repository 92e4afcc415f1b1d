/**
 * The run folder's files outside the commit: the manifest (read, written), the writer's lock, the
 * metrics log, and the clean-up of what an uncommitted iteration left behind.
 */
import { Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Manifest, type MetricRow, MetricsTable } from "../schemas/manifest.ts"
import { messageOf } from "../schemas/message.ts"
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
    throw new UsageError({ message: `${file}: not a valid etaflow manifest (${messageOf(e)})` })
  }
}

/** Who holds a run folder's lock: a process on a host (a bare PID: a lock written before hosts were recorded). */
interface LockHolder {
  readonly pid: number
  readonly host: string
  readonly owner?: string
}

const readHolder = (lock: string): LockHolder => {
  const text = fs.readFileSync(lock, "utf8").trim()
  if (/^\d+$/.test(text)) return { pid: Number(text), host: os.hostname() }
  try {
    return JSON.parse(text) as LockHolder
  } catch {
    return { pid: -1, host: "unknown" }
  }
}

const isAlive = (pid: number) => {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

export interface LockOptions {
  /**
   * The caller holds this run's lease in the cluster database (a runner that took the run from the
   * queue), so a lock left by a process on another host belongs to a runner whose lease lapsed: it is
   * taken over. Without a lease such a lock is refused, since a PID cannot be checked across hosts.
   */
  readonly leased?: boolean
  /** Recorded in the lock for whoever finds it (e.g. "runner 10.0.0.3:34431"). */
  readonly owner?: string
}

/**
 * Takes the run folder's lock. A live writer on this host makes this a usage error and a dead one's
 * lock is replaced; a lock from another host is taken over only under a lease (see `LockOptions`).
 */
export const acquireLock = (dir: string, options: LockOptions = {}) => {
  const lock = path.join(dir, ".lock")
  if (fs.existsSync(lock)) {
    const holder = readHolder(lock)
    const by = `process ${holder.pid} on ${holder.host}${holder.owner === undefined ? "" : ` (${holder.owner})`}`
    if (holder.host === os.hostname() && isAlive(holder.pid)) {
      throw new UsageError({ message: `${dir} is being written by ${by} (lock ${lock}); not touching it` })
    }
    if (holder.host !== os.hostname() && options.leased !== true) {
      throw new UsageError({
        message: `${dir} is locked by ${by}, which cannot be checked from ${os.hostname()}; ` +
          `if that process is gone, remove ${lock}`
      })
    }
  }
  const holder: LockHolder = {
    pid: process.pid,
    host: os.hostname(),
    ...(options.owner === undefined ? {} : { owner: options.owner })
  }
  writeFileAtomic(lock, JSON.stringify(holder))
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
