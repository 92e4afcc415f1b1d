/**
 * Using a run folder's recorded hashes (store/integrity.ts): the state a resume or replay starts from is
 * checked before it is decoded, and damage is reported with what the user can do about it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { messageOf } from "../schemas/message.ts"
import {
  checkFile,
  type Damage,
  DamagedFile,
  describeDamage,
  INDEX_DIR,
  PRUNED_FILE,
  readRecords,
  type Recorded,
  relName,
  type StoredFiles
} from "../store/integrity.ts"
import { StoreError } from "./errors.ts"
import { iterFile, readManifest } from "./run-folder.ts"

/** The newest checkpoint before iteration `before` whose recorded files are all intact, if any. */
const newestIntactCheckpoint = (files: StoredFiles, before: number): number | undefined => {
  for (let i = before - 1; i >= 0; i--) {
    const ckpt = path.join(files.root, "checkpoints", iterFile(i))
    if (fs.existsSync(ckpt) && files.check(ckpt).length === 0) return i
  }
  return undefined
}

/** The error for damaged files a run needs: each of them, and the way out. */
export const damageError = (files: StoredFiles, damage: ReadonlyArray<Damage>, checkpoint: number | undefined) => {
  const intact = checkpoint === undefined ? undefined : newestIntactCheckpoint(files, checkpoint)
  const lines = [
    ...damage.map(describeDamage),
    "nothing was computed from it. `etaflow verify " + files.root + "` lists every damaged file; restore " +
    (damage.length === 1 ? "it" : "them") + " from a copy, or re-run the stored iterations into a new folder " +
    "with `etaflow replay " + files.root + " --from <entry>`" +
    (intact === undefined ? "" : `; the newest intact checkpoint is iteration ${intact} (${iterFile(intact)})`)
  ]
  return new StoreError({ file: damage[0].file, message: lines.join("\n") })
}

/**
 * The files of checkpoint `iteration`, each hashed as it is read and checked against its record; a damaged
 * or missing recorded file fails with every damaged file of the checkpoint named.
 */
export const readCheckpoint = (files: StoredFiles, iteration: number): Record<string, Uint8Array> => {
  const ckpt = path.join(files.root, "checkpoints", iterFile(iteration))
  try {
    return files.readDir(ckpt)
  } catch (e) {
    if (!(e instanceof DamagedFile)) throw e
    // The first damaged file stopped the read; the message names every one of the checkpoint.
    const all = files.check(ckpt)
    throw damageError(files, all.length > 0 ? all : [e.damage], iteration)
  }
}

/** What `etaflow verify` finds in one run folder. */
export interface VerifyReport {
  readonly dir: string
  readonly iterations: number
  /** Recorded files checked. */
  readonly checked: number
  /** Written before etaflow recorded hashes: nothing to check against. */
  readonly legacy: boolean
  /** Damage: a recorded file changed or gone, an index or the manifest unreadable (exit 1). */
  readonly damaged: ReadonlyArray<{ readonly file: string; readonly problem: string }>
  /** Files the commits did not record (not damage: listed for the user to judge). */
  readonly unrecorded: ReadonlyArray<string>
  /** What an interrupted commit left (an iteration past the commit point, a `.tmp`): resume removes them. */
  readonly uncommitted: ReadonlyArray<string>
}

/**
 * The folder's own bookkeeping, outside the commits' records: the commit point, the lock, the log, the
 * summaries every commit rewrites (an interrupted commit may leave them a commit ahead), the report.
 */
const BOOKKEEPING = new Set([
  "manifest.json",
  ".lock",
  "metrics.jsonl",
  "metrics.parquet",
  "meta/info.json",
  "meta/timings.json",
  "report.html",
  `${INDEX_DIR}/${PRUNED_FILE}`
])

const walk = (root: string, dir = root): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() && !e.name.endsWith(".tmp") ? walk(root, p) : [relName(root, p)]
  })

const iterationOf = (rel: string) => {
  const m = /(?:^|\/)iter-(\d{6})/.exec(rel)
  return m === null ? undefined : Number(m[1])
}

/** Every recorded file of a run folder against its hash, and what the folder holds beyond its records. */
export const verifyRun = (dir: string): VerifyReport => {
  const report = { dir, iterations: 0, checked: 0, legacy: false, damaged: [], unrecorded: [], uncommitted: [] }
  let complete: number
  let records: Map<string, Recorded> | undefined
  try {
    complete = readManifest(dir).iterations_complete
    records = readRecords(dir, complete)
  } catch (e) {
    return { ...report, damaged: [{ file: dir, problem: messageOf(e) }] }
  }
  const damaged = [...(records ?? [])].flatMap(([rel, rec]) => {
    const damage = checkFile(path.join(dir, rel), rec)
    return damage === undefined ? [] : [{ file: rel, problem: describeDamage(damage) }]
  })
  const unrecorded: Array<string> = []
  const uncommitted: Array<string> = []
  for (const rel of walk(dir)) {
    const iteration = iterationOf(rel)
    if (rel.endsWith(".tmp") || (iteration !== undefined && iteration >= complete)) uncommitted.push(rel)
    else if (BOOKKEEPING.has(rel) || rel.startsWith(`${INDEX_DIR}/iter-`)) continue
    else if (records !== undefined && !records.has(rel)) unrecorded.push(rel)
  }
  return {
    dir,
    iterations: complete,
    checked: records?.size ?? 0,
    legacy: records === undefined && complete > 0,
    damaged,
    unrecorded,
    uncommitted
  }
}
