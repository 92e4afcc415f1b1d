/**
 * What a run folder's files should contain. Every commit writes an index beside its files
 * (`index/iter-NNNNNN.json`): the SHA-256 and size of each file the iteration wrote, and the files
 * retention removed. The index is written before the commit point (the manifest), so an iteration's
 * index is valid exactly when the iteration is committed; resume's clean-up removes a later one by name.
 *
 * SHA-256 rather than a faster non-cryptographic hash: with the CPU's SHA extensions it costs the commit
 * worker little while the next iteration computes (docs/performance.md), and a recorded SHA-256 means
 * what git's and PostgreSQL's do.
 */
import { Data } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { messageOf } from "../schemas/message.ts"

export const INDEX_FORMAT = "etaflow.index/1"
export const INDEX_DIR = "index"
/** Files retention or `etaflow prune` removed after their iteration committed. */
export const PRUNED_FILE = "pruned.json"

export interface FileRecord {
  readonly sha256: string
  readonly bytes: number
}

export interface IterationIndex {
  readonly format: typeof INDEX_FORMAT
  readonly iteration: number
  readonly algorithm: "sha256"
  /** Paths relative to the run folder, '/'-separated. */
  readonly files: Readonly<Record<string, FileRecord>>
  readonly pruned: ReadonlyArray<string>
}

export const sha256 = (data: Uint8Array | string): string => createHash("sha256").update(data).digest("hex")

export const recordOf = (data: Uint8Array | string): FileRecord => ({
  sha256: sha256(data),
  bytes: typeof data === "string" ? Buffer.byteLength(data) : data.byteLength
})

/** The run-relative, '/'-separated name of `file`. */
export const relName = (root: string, file: string): string => path.relative(root, file).split(path.sep).join("/")

const indexName = /^iter-(\d{6})\.json$/

/** A recorded file: what it should hold, and the iteration whose commit wrote it last. */
export interface Recorded extends FileRecord {
  readonly iteration: number
}

/**
 * What the committed iterations (< `complete`) recorded, later commits over earlier ones, minus what was
 * pruned since; `undefined` for a folder written before etaflow recorded hashes. An index that cannot be
 * read is itself damage, reported by throwing with its name.
 */
export const readRecords = (root: string, complete: number): Map<string, Recorded> | undefined => {
  const dir = path.join(root, INDEX_DIR)
  if (!fs.existsSync(dir)) return undefined
  const indexes = fs.readdirSync(dir).flatMap((name) => {
    const m = indexName.exec(name)
    return m !== null && Number(m[1]) < complete ? [{ name, iteration: Number(m[1]) }] : []
  }).sort((a, b) => a.iteration - b.iteration)
  if (indexes.length === 0) return undefined
  const records = new Map<string, Recorded>()
  for (const { name } of indexes) {
    const index = readJson(path.join(dir, name)) as IterationIndex
    if (index.format !== INDEX_FORMAT || typeof index.files !== "object" || !Array.isArray(index.pruned)) {
      throw new Error(`${path.join(dir, name)}: not an ${INDEX_FORMAT} index`)
    }
    forget(records, index.pruned)
    for (const [rel, rec] of Object.entries(index.files)) records.set(rel, { ...rec, iteration: index.iteration })
  }
  const pruned = path.join(dir, PRUNED_FILE)
  if (fs.existsSync(pruned)) forget(records, readJson(pruned) as Array<string>)
  return records
}

/** Drops pruned files, and every file under a pruned folder (a whole checkpoint). */
const forget = (records: Map<string, Recorded>, pruned: ReadonlyArray<string>) => {
  for (const rel of pruned) {
    records.delete(rel)
    for (const key of records.keys()) if (key.startsWith(`${rel}/`)) records.delete(key)
  }
}

const readJson = (file: string): unknown => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"))
  } catch (e) {
    throw new Error(`${file} is damaged: ${messageOf(e)}`)
  }
}

/** Adds `rels` to the folder's list of pruned files (written atomically by the caller's writer). */
export const prunedList = (root: string, rels: ReadonlyArray<string>): string => {
  const file = path.join(root, INDEX_DIR, PRUNED_FILE)
  const before = fs.existsSync(file) ? (readJson(file) as Array<string>) : []
  return JSON.stringify([...new Set([...before, ...rels])].sort(), null, 1) + "\n"
}

/** Why a recorded file cannot be trusted, or undefined when it holds what its commit wrote. */
export type Damage =
  | { readonly kind: "missing"; readonly file: string; readonly recorded: Recorded }
  | { readonly kind: "changed"; readonly file: string; readonly recorded: Recorded; readonly found: FileRecord }

export const checkBytes = (file: string, recorded: Recorded, data: Uint8Array): Damage | undefined => {
  const found = recordOf(data)
  return found.sha256 === recorded.sha256 && found.bytes === recorded.bytes
    ? undefined
    : { kind: "changed", file, recorded, found }
}

export const checkFile = (file: string, recorded: Recorded): Damage | undefined =>
  fs.existsSync(file)
    ? checkBytes(file, recorded, fs.readFileSync(file))
    : { kind: "missing", file, recorded }

/** One line naming the file, what its commit recorded and what is there now. */
export const describeDamage = (d: Damage): string => {
  const recorded = `iteration ${d.recorded.iteration} recorded sha256 ${d.recorded.sha256} (${d.recorded.bytes} bytes)`
  return d.kind === "missing"
    ? `${d.file} is missing: ${recorded}`
    : `${d.file} is damaged: ${recorded}, found sha256 ${d.found.sha256} (${d.found.bytes} bytes)`
}

/** A file a run folder recorded no longer holds what its commit wrote (or is gone). */
export class DamagedFile extends Data.TaggedError("DamagedFile")<{
  readonly file: string
  readonly damage: Damage
  readonly message: string
}> {}

/** Reads of a committed run folder's files, each checked against its record before anyone uses it. */
export interface StoredFiles {
  readonly root: string
  /** No file of the folder is recorded: written before etaflow recorded hashes. */
  readonly legacy: boolean
  /** A committed file's bytes; throws `DamagedFile` when they are not what was recorded. */
  readonly read: (file: string) => Uint8Array
  /** Whether the folder holds `file` (retention may not have kept it); `DamagedFile` when recorded but gone. */
  readonly has: (file: string) => boolean
  /** A committed folder's files by name (a checkpoint); a recorded file that is gone is damage too. */
  readonly readDir: (dir: string) => Record<string, Uint8Array>
  /** The damage of the recorded files under `dir` (or of one file), without throwing. */
  readonly check: (fileOrDir: string) => Array<Damage>
}

export const storedFiles = (root: string, complete: number): StoredFiles => {
  const records = readRecords(root, complete)
  const damaged = (d: Damage): never => {
    throw new DamagedFile({ file: d.file, damage: d, message: describeDamage(d) })
  }
  const recordedUnder = (dir: string) => {
    const prefix = `${relName(root, dir)}/`
    return [...(records ?? new Map<string, Recorded>())].filter(([rel]) => rel.startsWith(prefix))
  }
  // Files already found intact, by size and modification time: a replay restores one iteration's
  // trajectory file for three entries, and hashing it once is enough while it is unchanged.
  const intact = new Map<string, string>()
  const read = (file: string) => {
    const recorded = records?.get(relName(root, file))
    if (recorded !== undefined && !fs.existsSync(file)) damaged({ kind: "missing", file, recorded })
    const stat = fs.statSync(file)
    const stamp = `${stat.size}:${stat.mtimeMs}`
    const data = new Uint8Array(fs.readFileSync(file))
    if (recorded === undefined || intact.get(file) === stamp) return data
    const damage = checkBytes(file, recorded, data)
    if (damage !== undefined) return damaged(damage)
    intact.set(file, stamp)
    return data
  }
  return {
    root,
    legacy: records === undefined,
    read,
    has: (file) => {
      if (fs.existsSync(file)) return true
      const recorded = records?.get(relName(root, file))
      return recorded === undefined ? false : damaged({ kind: "missing", file, recorded })
    },
    readDir: (dir) => {
      for (const [rel, recorded] of recordedUnder(dir)) {
        const file = path.join(root, rel)
        if (!fs.existsSync(file)) damaged({ kind: "missing", file, recorded })
      }
      return Object.fromEntries(fs.readdirSync(dir).map((f) => [f, read(path.join(dir, f))]))
    },
    check: (target) => {
      const recorded = records?.get(relName(root, target))
      const entries = recorded !== undefined ? [[relName(root, target), recorded] as const] : recordedUnder(target)
      return entries.flatMap(([rel, rec]) => checkFile(path.join(root, rel), rec) ?? [])
    }
  }
}
