/**
 * Iteration commits, written by a worker thread while the next iteration computes.
 *
 * The main thread prepares a commit as bytes (Arrow tables as IPC streams, the encoded state, the
 * metrics) and hands it over; the worker encodes the Parquet files and writes everything atomically,
 * the commit point (the manifest) last. Encoding and fsyncing an MNIST iteration's 20–80 MB of
 * trajectories and 30 MB of checkpoint take 0.3–0.6 s, about as long as its rollout, and the main
 * thread would otherwise wait for them. Jobs run one at a time, in submission order.
 */
import * as arrow from "apache-arrow"
import * as fs from "node:fs"
import { Worker } from "node:worker_threads"
import { messageOf } from "../schemas/message.ts"
import { writeDirAtomic, writeFileAtomic } from "./atomic.ts"
import { type FileRecord, INDEX_FORMAT, type IterationIndex, recordOf, relName } from "./integrity.ts"
import { parquetFromIpc } from "./parquet.ts"

export type FileData = Uint8Array | string

export interface CommitJob {
  /** Arrow tables, as IPC stream bytes, written as Parquet files. */
  readonly tables: ReadonlyArray<{ readonly file: string; readonly ipc: Uint8Array }>
  /** Folders written whole (a checkpoint); `owned` bytes are the job's own, free again once it lands. */
  readonly dirs: ReadonlyArray<
    { readonly dir: string; readonly files: Readonly<Record<string, FileData>>; readonly owned?: boolean }
  >
  /** `record: false`: a summary every commit rewrites (meta/, metrics.parquet), outside the index. */
  readonly files: ReadonlyArray<{ readonly file: string; readonly data: FileData; readonly record?: false }>
  /** Text appended to a file (metrics.jsonl) after the files above. */
  readonly append?: { readonly file: string; readonly text: string }
  /** Written last: the commit point. */
  readonly commitPoint: { readonly file: string; readonly data: string }
  /** Removed after the commit point: what an older iteration no longer keeps (retention). */
  readonly prune?: ReadonlyArray<string>
  /** Where the iteration's index goes: the hash of every file above, and what `prune` removes (store/integrity.ts). */
  readonly index?: { readonly file: string; readonly root: string; readonly iteration: number }
}

/** The IPC bytes of a table, ready for a commit job (a buffer of their own, moved to the worker). */
export const tableBytes = (table: arrow.Table): Uint8Array => {
  const ipc = arrow.tableToIPC(table, "stream")
  return ipc.byteOffset === 0 && ipc.byteLength === ipc.buffer.byteLength ? ipc : ipc.slice()
}

/** Runs a write; its failure (ENOSPC, EFBIG, EACCES…) names the file, which Node's message for a write does not. */
const named = (file: string, write: () => void) => {
  try {
    write()
  } catch (e) {
    throw new Error(`${file}: ${messageOf(e)}`)
  }
}

/** Carries out a commit job, in order. Used by the worker; synchronous. */
export const performCommit = (job: CommitJob): void => {
  const records: Record<string, FileRecord> = {}
  const record = (file: string, data: FileData) => {
    if (job.index !== undefined) records[relName(job.index.root, file)] = recordOf(data)
  }
  const write = (file: string, data: FileData, recorded = true) => {
    if (recorded) record(file, data)
    named(file, () => writeFileAtomic(file, data))
  }
  for (const t of job.tables) write(t.file, parquetFromIpc(t.ipc))
  for (const d of job.dirs) {
    for (const [name, data] of Object.entries(d.files)) record(`${d.dir}/${name}`, data)
    named(d.dir, () => writeDirAtomic(d.dir, d.files))
  }
  for (const f of job.files) write(f.file, f.data, f.record !== false)
  if (job.append !== undefined) {
    const { file, text } = job.append
    named(file, () => fs.appendFileSync(file, text))
  }
  if (job.index !== undefined) {
    const { file, root, iteration } = job.index
    const pruned = (job.prune ?? []).map((p) => relName(root, p))
    const index: IterationIndex = { format: INDEX_FORMAT, iteration, algorithm: "sha256", files: records, pruned }
    named(file, () => writeFileAtomic(file, JSON.stringify(index, null, 1) + "\n"))
  }
  named(job.commitPoint.file, () => writeFileAtomic(job.commitPoint.file, job.commitPoint.data))
  for (const p of job.prune ?? []) fs.rmSync(p, { recursive: true, force: true })
}

/**
 * Shared memory for owned checkpoint files, by byte length, free once a commit that wrote it has
 * landed: the next iteration's checkpoint encodes into it instead of ~30 MB of fresh memory (an RL
 * checkpoint has the same sizes every iteration). Shared, not moved: memory moved between threads
 * counts as new on arrival, and every ~64 MB of new memory starts a full garbage collection of the main
 * thread's heap. Bounded, so an unusual run cannot hold memory it no longer needs.
 */
const FREE = new Map<number, Array<SharedArrayBuffer>>()
const MAX_FREE_BYTES = 256 * 2 ** 20
let freeBytes = 0

const release = (buffers: ReadonlyArray<SharedArrayBuffer>) => {
  for (const b of buffers) {
    if (freeBytes + b.byteLength > MAX_FREE_BYTES) return
    FREE.set(b.byteLength, [...(FREE.get(b.byteLength) ?? []), b])
    freeBytes += b.byteLength
  }
}

/**
 * Bytes for an owned checkpoint file: shared memory a landed commit freed, or new. Its old contents
 * are stale, so the caller must write every byte.
 */
export const reusableBytes = (byteLength: number): Uint8Array => {
  const b = FREE.get(byteLength)?.pop()
  if (b === undefined) return new Uint8Array(new SharedArrayBuffer(byteLength))
  freeBytes -= byteLength
  return new Uint8Array(b)
}

/** The shared buffers of a job's owned folder files (from `reusableBytes`): free again once it lands. */
const sharedBuffers = (job: CommitJob): Array<SharedArrayBuffer> =>
  job.dirs.filter((d) => d.owned === true).flatMap((d) =>
    Object.values(d.files).flatMap((f) =>
      f instanceof Uint8Array && f.buffer instanceof SharedArrayBuffer ? [f.buffer] : []
    )
  )

let worker: Worker | undefined
let nextId = 0
const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>()

const failAll = (e: Error) => {
  for (const p of pending.values()) p.reject(e)
  pending.clear()
  worker = undefined
}

const commitWorker = (): Worker => {
  if (worker !== undefined) return worker
  const w = new Worker(new URL("./commit-worker.mjs", import.meta.url))
  w.on("message", (m: { id: number; error?: string }) => {
    const p = pending.get(m.id)
    pending.delete(m.id)
    // An idle worker must not keep the process alive.
    if (pending.size === 0) w.unref()
    if (m.error === undefined) p?.resolve()
    else p?.reject(new Error(m.error))
  })
  w.on("error", (e) => failAll(e))
  w.on("exit", (code) => failAll(new Error(`the commit worker exited (code ${code})`)))
  worker = w
  return w
}

/**
 * Submits a commit job; resolves when every file of it is durable. The tables' IPC bytes (made for
 * the job by `tableBytes`) are moved to the worker and owned checkpoint files (shared memory from
 * `reusableBytes`) shared with it, not copied; everything else is copied, since it may be memory a
 * node or the next iteration still uses.
 */
export const commitInBackground = (job: CommitJob): Promise<void> =>
  new Promise((resolve, reject) => {
    const w = commitWorker()
    const id = nextId++
    const shared = sharedBuffers(job)
    pending.set(id, {
      resolve: () => {
        release(shared)
        resolve()
      },
      // A failed commit may have left its memory half-written, which `reusableBytes` allows for.
      reject: (e) => {
        release(shared)
        reject(e)
      }
    })
    w.ref()
    w.postMessage({ id, job }, [...new Set(job.tables.map((t) => t.ipc.buffer as ArrayBuffer))])
  })
