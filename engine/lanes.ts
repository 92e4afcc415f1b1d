/**
 * Row lanes: a model whose rows are independent (forwards, per-row VJPs) runs as `lanes` single-threaded
 * sessions on consecutive slices of the batch — the first on the calling thread, each other one in a
 * worker thread of its own (engine/lane-worker.mjs) — instead of one session with `lanes` intra-op
 * threads. At the batch sizes of a rollout or an adjoint, onnxruntime's intra-op threads share each op
 * poorly (every op is a fork and a join; docs/performance.md, docs/design.md "Threads of a run"). For models with
 * baked weights: fed weights would be packed again by every lane on every call.
 *
 * Bits: onnxruntime's matrix products and elementwise kernels give the same bits for any split of the
 * rows and any thread count, so a laned run equals the one-session run bit for bit (tested).
 */
import { Worker } from "node:worker_threads"
import type { Graph } from "./graph.ts"
import { GraphError } from "./graph.ts"
import { toOnnx } from "./onnx.ts"
import { EngineSession, type HostData, type HostTensor, ortTypeOf, SessionError, sessionOptions } from "./session.ts"

/** Below this many rows per lane a batch runs on the calling thread alone (a hand-over costs more). */
const MIN_LANE_ROWS = 16

interface Reply {
  readonly id: number
  readonly error?: string
  readonly outputs?: Record<string, HostTensor>
}

/** One worker lane: requests answered in order, each by its id. */
class Lane {
  private readonly worker: Worker
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>()
  private next = 0
  private lost: Error | undefined

  constructor() {
    this.worker = new Worker(new URL("./lane-worker.mjs", import.meta.url))
    this.worker.unref()
    this.worker.on("message", (r: Reply) => {
      const p = this.pending.get(r.id)
      this.pending.delete(r.id)
      // An idle lane must not keep the process alive.
      if (this.pending.size === 0) this.worker.unref()
      p?.resolve(r)
    })
    const fail = (e: Error) => {
      this.lost = e
      for (const p of this.pending.values()) p.reject(e)
      this.pending.clear()
    }
    this.worker.on("error", fail)
    this.worker.on("exit", (code) => fail(new Error(`the lane worker exited (code ${code})`)))
  }

  request(message: Record<string, unknown>, transfer: Array<ArrayBuffer> = []): Promise<Reply> {
    if (this.lost !== undefined) return Promise.reject(this.lost)
    const id = this.next++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      // Only while a request is in flight does the lane keep the process alive.
      this.worker.ref()
      this.worker.postMessage({ ...message, id }, transfer)
    })
  }
}

const LANES: Array<Lane> = []
/** The process's worker lanes 1 … n (lane 0 is the calling thread), started on first use. */
const lanesUpTo = (n: number): Array<Lane> => {
  while (LANES.length < n) LANES.push(new Lane())
  return LANES.slice(0, n)
}

let sessionIds = 0

/**
 * A laned session its owner dropped without `release` (a frozen base model's, kept as long as its
 * weights live) closes its worker copies when collected, so a process running many runs does not keep
 * every run's models in its lane workers.
 */
const UNRELEASED = new FinalizationRegistry<{ readonly workers: ReadonlyArray<Lane>; readonly id: number }>(
  ({ workers, id }) => {
    for (const w of workers) w.request({ op: "close", session: id }).catch(() => undefined)
  }
)

const rowsOf = (t: HostTensor) => t.dims[0]

/** Rows [from, to) of a row-major tensor, copied (a worker gets its own buffer, handed over). */
const sliceRows = (t: HostTensor, from: number, to: number): HostTensor => {
  const per = t.data.length / Math.max(1, rowsOf(t))
  return { data: t.data.slice(from * per, to * per) as HostData, dims: [to - from, ...t.dims.slice(1)] }
}

/** Rows [from, to) of a row-major tensor, a view (the calling thread's lane reads them in place). */
const viewRows = (t: HostTensor, from: number, to: number): HostTensor => {
  const per = t.data.length / Math.max(1, rowsOf(t))
  return { data: t.data.subarray(from * per, to * per) as HostData, dims: [to - from, ...t.dims.slice(1)] }
}

const concatRows = (name: string, model: string, parts: ReadonlyArray<HostTensor>, rows: ReadonlyArray<number>) => {
  parts.forEach((p, i) => {
    if (p.dims[0] !== rows[i]) {
      throw new SessionError({
        model,
        message: `${model}: output ${name} has ${p.dims[0]} rows for a lane of ${rows[i]}: not a row-wise model`
      })
    }
  })
  const total = parts.reduce((n, p) => n + p.data.length, 0)
  const Ctor = parts[0].data.constructor as new(n: number) => HostData
  const data = new Ctor(total)
  let at = 0
  for (const p of parts) {
    data.set(p.data as never, at)
    at += p.data.length
  }
  return { data, dims: [rows.reduce((a, b) => a + b, 0), ...parts[0].dims.slice(1)] }
}

export class LanedSession {
  private constructor(
    readonly name: string,
    private readonly main: EngineSession,
    private readonly workers: ReadonlyArray<Lane>,
    private readonly id: number,
    /** The inputs split by rows; every other input goes whole to every lane. */
    private readonly rowInputs: ReadonlySet<string>
  ) {
    UNRELEASED.register(this, { workers, id }, this)
  }

  /**
   * A graph whose inputs of leading dimension "B" (named) are rows, and whose every output is row-wise;
   * `initializers` are baked into the model. With one lane it is a 1-thread session on the calling thread.
   */
  static async fromGraph(
    g: Graph,
    options: { readonly lanes: number; readonly initializers?: Record<string, Float32Array> }
  ): Promise<LanedSession> {
    const rowInputs = g.inputs.filter((i) => typeof i.tensor.shape[0] === "string").map((i) => i.name)
    const notRows = g.outputs.filter((o) => typeof o.tensor.shape[0] !== "string").map((o) => o.name)
    if (rowInputs.length === 0 || notRows.length > 0) {
      throw new GraphError({
        graph: g.name,
        message: `${g.name}: lanes need row inputs and row-wise outputs (outputs without a batch axis: ${
          notRows.join(", ") || "none"
        })`
      })
    }
    const bytes = toOnnx(g, options.initializers === undefined ? {} : { initializers: options.initializers })
    const main = await EngineSession.fromBytes(g.name, bytes, { threads: 1 })
    const workers = lanesUpTo(options.lanes - 1)
    const id = sessionIds++
    const opened = await Promise.all(
      workers.map((w) => w.request({ op: "open", session: id, bytes, options: sessionOptions({ threads: 1 }) }))
    )
    const failed = opened.find((r) => r.error !== undefined)
    if (failed !== undefined) {
      throw new SessionError({ model: g.name, message: `${g.name}: a lane could not load the model (${failed.error})` })
    }
    return new LanedSession(g.name, main, workers, id, new Set(rowInputs))
  }

  get lanes(): number {
    return this.workers.length + 1
  }

  /** Runs the model, its rows split over the lanes; outputs are the lanes' outputs in row order. */
  async run(feeds: Readonly<Record<string, HostTensor>>): Promise<Record<string, HostTensor>> {
    const rowFeed = Object.keys(feeds).find((k) => this.rowInputs.has(k))
    const B = rowFeed === undefined ? 0 : rowsOf(feeds[rowFeed])
    const L = this.lanes
    if (L === 1 || B < L * MIN_LANE_ROWS) return this.main.run(feeds)
    const starts = Array.from({ length: L + 1 }, (_, i) => Math.floor((i * B) / L))
    const laneFeeds = (i: number, copy: boolean) => {
      const out: Record<string, HostTensor> = {}
      for (const [k, t] of Object.entries(feeds)) {
        if (!this.rowInputs.has(k)) out[k] = t
        else if (copy) out[k] = sliceRows(t, starts[i], starts[i + 1])
        else out[k] = viewRows(t, starts[i], starts[i + 1])
      }
      return out
    }
    // The workers start first; the calling thread's run blocks until its own rows are done.
    const replies = this.workers.map((w, i) => {
      const f = laneFeeds(i + 1, true)
      const wired = Object.fromEntries(Object.entries(f).map(([k, t]) => [k, this.wire(k, t)]))
      const transfer = Object.keys(f).filter((k) => this.rowInputs.has(k)).map((k) => f[k].data.buffer as ArrayBuffer)
      return w.request({ op: "run", session: this.id, feeds: wired }, transfer)
    })
    // If the calling thread's rows fail first, a lost worker's rejection must not go unhandled.
    for (const r of replies) r.catch(() => undefined)
    const first = await this.main.run(laneFeeds(0, false))
    const rest = await this.all(replies)
    const rows = starts.slice(1).map((s, i) => s - starts[i])
    return Object.fromEntries(
      Object.keys(first).map((k) => [k, concatRows(k, this.name, [first[k], ...rest.map((r) => r.outputs![k])], rows)])
    )
  }

  async release(): Promise<void> {
    UNRELEASED.unregister(this)
    await this.all(this.workers.map((w) => w.request({ op: "close", session: this.id })))
    await this.main.release()
  }

  private wire(name: string, t: HostTensor) {
    return { type: ortTypeOf(this.name, name, t.data), data: t.data, dims: t.dims }
  }

  private async all(replies: ReadonlyArray<Promise<Reply>>): Promise<Array<Reply>> {
    const done = await Promise.all(replies).catch((e: Error) => {
      throw new SessionError({ model: this.name, message: `${this.name}: a lane was lost (${e.message})` })
    })
    const failed = done.find((r) => r.error !== undefined)
    if (failed !== undefined) {
      throw new SessionError({ model: this.name, message: `${this.name}: a lane failed (${failed.error})` })
    }
    return done
  }
}
