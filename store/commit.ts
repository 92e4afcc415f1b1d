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
import { writeDirAtomic, writeFileAtomic } from "./atomic.ts"
import { parquetFromIpc } from "./parquet.ts"

export type FileData = Uint8Array | string

export interface CommitJob {
  /** Arrow tables, as IPC stream bytes, written as Parquet files. */
  readonly tables: ReadonlyArray<{ readonly file: string; readonly ipc: Uint8Array }>
  /** Folders written whole (a checkpoint); `owned` bytes are the job's own, moved to the worker. */
  readonly dirs: ReadonlyArray<
    { readonly dir: string; readonly files: Readonly<Record<string, FileData>>; readonly owned?: boolean }
  >
  readonly files: ReadonlyArray<{ readonly file: string; readonly data: FileData }>
  /** Text appended to a file (metrics.jsonl) after the files above. */
  readonly append?: { readonly file: string; readonly text: string }
  /** Written last: the commit point. */
  readonly commitPoint: { readonly file: string; readonly data: string }
  /** Removed after the commit point: what an older iteration no longer keeps (retention). */
  readonly prune?: ReadonlyArray<string>
}

/** The IPC bytes of a table, ready for a commit job (a buffer of their own, moved to the worker). */
export const tableBytes = (table: arrow.Table): Uint8Array => {
  const ipc = arrow.tableToIPC(table, "stream")
  return ipc.byteOffset === 0 && ipc.byteLength === ipc.buffer.byteLength ? ipc : ipc.slice()
}

/** Carries out a commit job, in order. Used by the worker; synchronous. */
export const performCommit = (job: CommitJob): void => {
  for (const t of job.tables) writeFileAtomic(t.file, parquetFromIpc(t.ipc))
  for (const d of job.dirs) writeDirAtomic(d.dir, d.files)
  for (const f of job.files) writeFileAtomic(f.file, f.data)
  if (job.append !== undefined) fs.appendFileSync(job.append.file, job.append.text)
  writeFileAtomic(job.commitPoint.file, job.commitPoint.data)
  for (const p of job.prune ?? []) fs.rmSync(p, { recursive: true, force: true })
}

/**
 * Owned buffers the worker has written and handed back, by byte length: the next iteration's
 * checkpoint encodes into them instead of ~30 MB of fresh memory (an RL checkpoint has the same
 * sizes every iteration). Bounded, so an unusual run cannot hold memory it no longer needs.
 */
const RETURNED = new Map<number, Array<ArrayBuffer>>()
const MAX_RETURNED_BYTES = 256 * 2 ** 20
let returnedBytes = 0

const keepReturned = (buffers: ReadonlyArray<ArrayBuffer>) => {
  for (const b of buffers) {
    if (returnedBytes + b.byteLength > MAX_RETURNED_BYTES) return
    RETURNED.set(b.byteLength, [...(RETURNED.get(b.byteLength) ?? []), b])
    returnedBytes += b.byteLength
  }
}

/**
 * Bytes for an owned checkpoint file: a buffer a landed commit handed back, or fresh memory. Its old
 * contents are stale, so the caller must write every byte.
 */
export const reusableBytes = (byteLength: number): Uint8Array => {
  const b = RETURNED.get(byteLength)?.pop()
  if (b === undefined) return new Uint8Array(byteLength)
  returnedBytes -= byteLength
  return new Uint8Array(b)
}

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
  w.on("message", (m: { id: number; error?: string; returned?: ReadonlyArray<ArrayBuffer> }) => {
    keepReturned(m.returned ?? [])
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
 * The whole buffers of owned folder files (a view into a larger buffer is copied, never detached): moved
 * to the worker with the job, and back once it is written.
 */
export const ownedBuffers = (job: CommitJob): Array<ArrayBuffer> =>
  job.dirs.filter((d) => d.owned === true).flatMap((d) =>
    Object.values(d.files).flatMap((f) =>
      f instanceof Uint8Array && f.byteOffset === 0 && f.byteLength === f.buffer.byteLength
        ? [f.buffer as ArrayBuffer]
        : []
    )
  )

/**
 * Submits a commit job; resolves when every file of it is durable. The tables' IPC bytes (made for
 * the job by `tableBytes`) and owned checkpoint files are moved to the worker, not copied; everything
 * else is copied, since it may be memory a node or the next iteration still uses.
 */
export const commitInBackground = (job: CommitJob): Promise<void> =>
  new Promise((resolve, reject) => {
    const w = commitWorker()
    const id = nextId++
    pending.set(id, { resolve, reject })
    w.ref()
    w.postMessage({ id, job }, [
      ...new Set([...job.tables.map((t) => t.ipc.buffer as ArrayBuffer), ...ownedBuffers(job)])
    ])
  })
