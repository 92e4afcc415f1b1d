/**
 * Step noise drawn ahead in a worker thread. A rollout's JavaScript runs on one core while the other
 * idles (onnxruntime's forwards use both), and drawing the step noise was most of that JavaScript:
 * a worker draws every chain's normals for every step, in step order, into shared memory, from copies
 * of the chains' streams, while the rollout computes; the rollout reads step k once the worker has
 * drawn it. The draws are those the streams would have made themselves, bit for bit, and the streams
 * end where they would have (their final states are copied back).
 *
 * Jobs run one at a time in submission order and never wait on the main thread, so concurrent rollouts
 * (several runs in one process) only queue. Buffers are reused across rollouts of the same size.
 */
import { Worker } from "node:worker_threads"
import type { RandomStream } from "./streams.ts"

export interface PrefetchedNormals {
  /** Resolves once the normals of step k are drawn for every chain. */
  readonly ready: (k: number) => Promise<void>
  /** Chain j's d normals of step k (a view into shared memory; valid until `done`). */
  readonly at: (k: number, j: number) => Float64Array
  /** Copies the streams' final states back and hands the buffer on; call once every step is read. */
  readonly done: () => Promise<void>
}

/** The worker was lost: no normals are coming. */
export class PrefetchError extends Error {}

let worker: Worker | undefined
let failure: Error | undefined
/** Jobs the worker has not finished: it keeps the process alive only while there are some. */
let inFlight = 0
const FREE = new Map<number, Array<SharedArrayBuffer>>()

const prefetchWorker = (): Worker => {
  if (worker !== undefined) return worker
  const w = new Worker(new URL("./normals-worker.mjs", import.meta.url))
  w.on("message", () => {
    // An idle worker must not keep the process alive.
    if (--inFlight === 0) w.unref()
  })
  const lost = (e: Error) => {
    failure = new PrefetchError(`the step-noise worker failed (${e.message})`)
    worker = undefined
  }
  w.on("error", lost)
  w.on("exit", (code) => lost(new Error(`exit code ${code}`)))
  worker = w
  return w
}

const takeBuffer = (bytes: number) => FREE.get(bytes)?.pop() ?? new SharedArrayBuffer(bytes)

/**
 * Starts drawing `d` normals per chain (one stream per chain) for every step marked stochastic; steps
 * not marked are left unread (the rollout's ODE steps draw nothing).
 */
export const prefetchNormals = (
  streams: ReadonlyArray<RandomStream>,
  stochastic: ReadonlyArray<boolean>,
  d: number
): PrefetchedNormals => {
  if (failure !== undefined) throw failure
  const chains = streams.length
  const bytes = stochastic.length * chains * d * 8
  const normals = takeBuffer(bytes)
  const states = new Int32Array(new SharedArrayBuffer(16 * chains))
  streams.forEach((s, j) => states.set(s.state, 4 * j))
  const progress = new Int32Array(new SharedArrayBuffer(4))
  const values = new Float64Array(normals)
  const w = prefetchWorker()
  inFlight++
  w.ref()
  w.postMessage({ states, stochastic: [...stochastic], d, normals: values, progress })
  const ready = async (k: number) => {
    for (let seen = Atomics.load(progress, 0); seen <= k; seen = Atomics.load(progress, 0)) {
      if (failure !== undefined) throw failure
      // Wakes on the worker's notify; the timeout only re-checks for a lost worker.
      await Atomics.waitAsync(progress, 0, seen, 1000).value
    }
  }
  return {
    ready,
    at: (k, j) => values.subarray((k * chains + j) * d, (k * chains + j + 1) * d),
    done: async () => {
      await ready(stochastic.length - 1)
      streams.forEach((s, j) => s.state.set(states.subarray(4 * j, 4 * j + 4)))
      FREE.set(bytes, [...(FREE.get(bytes) ?? []), normals])
    }
  }
}

/**
 * Rollouts drawing at least this many step normals take them from the worker: below it, handing the
 * job over costs more than drawing (docs/performance.md). The draws are the same either way.
 */
const PREFETCH_MIN_NORMALS = 100_000

/**
 * The step noise of a rollout: chain j's d normals of step k, read in step order once `ready(k)` has
 * resolved. Large jobs are drawn ahead by the worker; small ones by the streams themselves as they are
 * read — the caller cannot tell, and the numbers are the same bits.
 */
export const stepNoise = (
  streams: ReadonlyArray<RandomStream>,
  stochastic: ReadonlyArray<boolean>,
  d: number
): PrefetchedNormals => {
  if (stochastic.filter(Boolean).length * streams.length * d >= PREFETCH_MIN_NORMALS) {
    return prefetchNormals(streams, stochastic, d)
  }
  const z = new Float64Array(d)
  return {
    ready: () => Promise.resolve(),
    at: (k, j) => (stochastic[k] ? streams[j].fillNormal(z) : z),
    done: () => Promise.resolve()
  }
}
