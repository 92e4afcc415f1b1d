/**
 * onnxruntime-node sessions with fixed settings: an explicit intra-op thread count (recorded by the
 * caller), one inter-op thread, sequential execution, no spin-waiting and a fixed optimization level,
 * so the same inputs give the same output bits. float64 graphs use the "basic" level: at higher levels a fusion
 * (QuickGeluFusion) produces an op with only a float32 kernel and session creation fails.
 */
import { Data } from "effect"
import * as ort from "onnxruntime-node"
import type { Graph } from "./graph.ts"
import { toOnnx } from "./onnx.ts"

export type HostData = Float32Array | Float64Array | BigInt64Array | Uint8Array
export interface HostTensor {
  readonly data: HostData
  readonly dims: ReadonlyArray<number>
}

export interface SessionOptions {
  /** Intra-op threads; results are bit-reproducible for a fixed count. */
  readonly threads: number
  readonly optimization?: "basic" | "all"
}

const ORT_TYPES = new Map<Function, ort.Tensor.Type>([[Float32Array, "float32"], [Float64Array, "float64"], [
  BigInt64Array,
  "int64"
], [Uint8Array, "bool"]])

/** The name of the onnxruntime type of a feed's data (the session names the model and the feed otherwise). */
export const ortTypeOf = (model: string, feed: string, data: HostData): ort.Tensor.Type => {
  const type = ORT_TYPES.get(data.constructor)
  if (type === undefined) throw new SessionError({ model, message: `${model}: ${feed} has unsupported data` })
  return type
}

/** onnxruntime's options for a session of these settings (a lane worker builds its sessions with them too). */
export const sessionOptions = (options: SessionOptions): ort.InferenceSession.SessionOptions => ({
  intraOpNumThreads: options.threads,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: options.optimization ?? "all",
  logSeverityLevel: 3,
  // No spin-waiting between ops: a pipeline keeps several sessions (rollout policy, frozen base,
  // trainer, reward) plus the commit worker on two cores, and an idle session's spinning threads
  // took the cores from the busy one (adjoint matching's iteration 0.49 → 0.42 s).
  extra: { session: { intra_op: { allow_spinning: "0" } } }
})

/** onnxruntime could not load or run a model (it names the model). */
export class SessionError
  extends Data.TaggedError("SessionError")<{ readonly model: string; readonly message: string }>
{}

export class EngineSession {
  private constructor(readonly name: string, readonly session: ort.InferenceSession, readonly threads: number) {}

  static async fromBytes(name: string, bytes: Uint8Array, options: SessionOptions): Promise<EngineSession> {
    try {
      const session = await ort.InferenceSession.create(bytes, sessionOptions(options))
      return new EngineSession(name, session, options.threads)
    } catch (e) {
      throw new SessionError({
        model: name,
        message: `${name}: onnxruntime could not load the model (${e instanceof Error ? e.message : e})`
      })
    }
  }

  static create(graph: Graph, options: SessionOptions): Promise<EngineSession> {
    const float64 = graph.inputs.some((i) => i.tensor.dtype === "float64")
    return EngineSession.fromBytes(graph.name, toOnnx(graph), { optimization: float64 ? "basic" : "all", ...options })
  }

  get inputNames(): ReadonlyArray<string> {
    return this.session.inputNames
  }

  /**
   * Runs the model. `into` names outputs onnxruntime writes into the given buffers (of the output's size
   * and type): a train step's weights and moments land in buffer sets the trainer manages. The binding
   * still returns a fresh copy of every output, those included (docs/onnxruntime.md), which the caller
   * may drop: `into` saves onnxruntime's output memory, not that copy.
   */
  async run(
    feeds: Readonly<Record<string, HostTensor>>,
    into?: Readonly<Record<string, HostTensor>>
  ): Promise<Record<string, HostTensor>> {
    const tensor = (name: string, t: HostTensor) =>
      new ort.Tensor(ortTypeOf(this.name, name, t.data), t.data as never, t.dims as Array<number>)
    const ortFeeds: Record<string, ort.Tensor> = {}
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = tensor(`input ${name}`, t)
    let out: ort.InferenceSession.ReturnType
    try {
      if (into === undefined) out = await this.session.run(ortFeeds)
      else {
        // Fetches list every output: the named ones into their buffers, the rest allocated by onnxruntime.
        const fetches: Record<string, ort.Tensor | null> = Object.fromEntries(
          this.session.outputNames.map((n) => [n, null])
        )
        for (const [name, t] of Object.entries(into)) fetches[name] = tensor(`output ${name}`, t)
        out = await this.session.run(ortFeeds, fetches)
      }
    } catch (e) {
      throw new SessionError({
        model: this.name,
        message: `${this.name}: run failed (${e instanceof Error ? e.message : e})`
      })
    }
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { data: v.data as HostData, dims: v.dims }]))
  }

  release(): Promise<void> {
    return this.session.release()
  }
}

const OWNED = new WeakMap<object, Map<string, Promise<unknown>>>()

/**
 * A session built once per `owner` (the frozen weights baked into it) and key, and kept while the
 * owner lives: a frozen base model's sessions are not rebuilt every iteration (docs/performance.md).
 * Callers must not release it.
 */
export const ownedSession = <T extends { readonly release: () => Promise<void> } | { readonly session: EngineSession }>(
  owner: object,
  key: string,
  build: () => Promise<T>
): Promise<T> => {
  const sessions = OWNED.get(owner) ?? new Map<string, Promise<unknown>>()
  OWNED.set(owner, sessions)
  // Keys name what was built, so each key always holds the T its builder returns.
  const hit = sessions.get(key) as Promise<T> | undefined
  if (hit !== undefined) return hit
  const session = build()
  sessions.set(key, session)
  return session
}
