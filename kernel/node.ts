/**
 * Nodes: a named, typed step `In → Effect<Out, E, R>`.
 *
 * A node declares its input ports (phantom-typed, so the compiler can check the edges of a
 * pipeline) and optionally the metrics worth logging from its output (Dagster's materializations).
 * Services a node needs (`Rng`, `NodeContext`, `RunStore`, provided by the kernel) appear in `R`;
 * its failures are tagged errors (`Node.promise` turns a promise-returning body into one). A node's
 * name is the name of the stage: the entry it is bound to in a pipeline and what `replay --from`
 * takes.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Node, Persist, Port } from "etaflow/kernel/node.ts"
 *
 * const count = Node.make({
 *   name: "count",
 *   doc: "rows of a table",
 *   inputs: { table: Port.of<arrow.Table>() },
 *   run: ({ table }) => Effect.succeed(table.numRows),
 *   metrics: (rows) => ({ rows })
 * })
 * // In a pipeline: bound to its inputs' sources, optionally persisted, computed once or restorable.
 * const entry = count.from({ table: "data" })
 * ```
 */
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import { messageOf } from "../schemas/message.ts"
import { NodeFailure } from "./errors.ts"
import { NodeContext } from "./services.ts"

/** A typed input port. It carries no runtime value; `Port.of<T>()` only fixes `T` for the compiler. */
export interface Port<T> {
  readonly _port: (t: T) => T
}
export const Port = { of: <T>(): Port<T> => ({ _port: (t: T) => t }) }

export type Inputs = Readonly<Record<string, unknown>>

export interface Node<In extends Inputs, Out, E = never, R = never> {
  readonly name: string
  /** One line: what the node produces. */
  readonly doc: string
  readonly inputs: { readonly [K in keyof In]: Port<In[K]> }
  readonly run: (input: In) => Effect.Effect<Out, E, R>
  /** Scalars to log for this output (metric name → value); NaN/Inf here stops the iteration. */
  readonly metrics?: (out: Out, input: In) => Readonly<Record<string, number>>
  /**
   * The node keeps every core busy (training, large batched inference with all intra-op threads): it
   * never runs beside another exclusive node of its level, which would oversubscribe the cores.
   */
  readonly exclusive?: boolean
  /** Binds this node's inputs to the outputs of other entries of a pipeline (or its sources). */
  readonly from: <const W extends { readonly [K in keyof In]: string }>(wiring: W) => Bound<In, Out, E, R, W>
}

/**
 * What a persisted entry may output: an Arrow table (as Parquet), a string or bytes (as they are),
 * `undefined` (nothing this iteration), or a table built only when it is written — a run's retention
 * may not keep it, and building a large table for nothing costs an iteration time.
 */
export type Persistable = arrow.Table | (() => arrow.Table) | string | Uint8Array | undefined

/** Where a persisted output goes in the run folder. */
export type PersistSpec =
  | { readonly kind: "per-iteration"; readonly dir: string }
  | { readonly kind: "once"; readonly file: string }

export const Persist = {
  /** `<dir>/iter-NNNNNN.parquet`, one file per iteration. */
  perIteration: (dir: string): PersistSpec => ({ kind: "per-iteration", dir }),
  /** A single file (e.g. `dataset.parquet`, `table.md`), written by the iteration that produces it. */
  once: (file: string): PersistSpec => ({ kind: "once", file })
}

/** What a restore function may read when a replay rebuilds an entry's output from a stored run. */
export interface RestoreContext {
  /** The stored run folder being replayed. */
  readonly source: string
  readonly iteration: number
  /** Outputs already available in this iteration (sources, entries computed once, earlier levels). */
  readonly outputs: Readonly<Record<string, unknown>>
  /** A stored file's bytes, checked against the hash its commit recorded (a damaged file fails naming it). */
  readonly read: (file: string) => Uint8Array
  /** Whether the stored run holds `file` (its retention may not have kept it); fails when its commit recorded it. */
  readonly has: (file: string) => boolean
}

/** A node placed in a pipeline: its wiring and, optionally, how its output is persisted. */
export interface Bound<In extends Inputs, Out, E, R, W> {
  readonly node: Node<In, Out, E, R>
  readonly wiring: W
  readonly persisted?: PersistSpec
  /** Computed once per process and reused by later iterations (inputs must not change across iterations). */
  readonly memoized?: true
  readonly once: () => Bound<In, Out, E, R, W>
  /**
   * Rebuilds this entry's output from a stored run, so a replay can start downstream of it;
   * `undefined` when the run did not keep it: the kernel then runs the node on the stored run's state.
   */
  readonly restore?: (ctx: RestoreContext) => Promise<Out | undefined>
  readonly restoredBy: (restore: (ctx: RestoreContext) => Promise<Out | undefined>) => Bound<In, Out, E, R, W>
  /**
   * Persists this entry's output through the run store: an Arrow table as Parquet, a string (a
   * report, a markdown table) as text, bytes (an ONNX model) as they are; `undefined` means nothing
   * to persist this iteration.
   */
  readonly persist: (
    spec: [Out] extends [Persistable] ? PersistSpec : never
  ) => Bound<In, Out, E, R, W>
}

export type AnyBound = Bound<any, any, any, any, any>

interface Extras<Out> {
  readonly persisted?: PersistSpec
  readonly memoized?: true
  readonly restore?: (ctx: RestoreContext) => Promise<Out | undefined>
}

const bind = <In extends Inputs, Out, E, R, W>(
  node: Node<In, Out, E, R>,
  wiring: W,
  extras: Extras<Out> = {}
): Bound<In, Out, E, R, W> => ({
  node,
  wiring,
  ...extras,
  persist: (spec) => bind(node, wiring, { ...extras, persisted: spec as PersistSpec }),
  once: () => bind(node, wiring, { ...extras, memoized: true }),
  restoredBy: (restore) => bind(node, wiring, { ...extras, restore })
})

/** A tagged error class (Data.TaggedError) a node body may throw and its callers may catchTag on. */
export type TaggedErrorClass = new(...args: ReadonlyArray<any>) => Error & { readonly _tag: string }

const describe = (e: unknown) => messageOf(e)

export const Node = {
  make: <In extends Inputs, Out, E = never, R = never>(
    def: Omit<Node<In, Out, E, R>, "from">
  ): Node<In, Out, E, R> => {
    const node: Node<In, Out, E, R> = { ...def, from: (wiring) => bind(node, wiring) }
    return node
  },

  /**
   * A promise-returning node body as an Effect with a typed failure: an error of one of the
   * `expected` tagged classes fails as itself; anything else becomes a NodeFailure naming the
   * pipeline, entry and iteration of the call.
   */
  promise: <A, const C extends ReadonlyArray<TaggedErrorClass>>(
    expected: C,
    body: () => Promise<A>
  ): Effect.Effect<A, InstanceType<C[number]> | NodeFailure, NodeContext> =>
    Effect.gen(function*() {
      const ctx = yield* NodeContext
      return yield* Effect.tryPromise({
        try: body,
        catch: (e): InstanceType<C[number]> | NodeFailure =>
          expected.some((k) => e instanceof k)
            ? (e as InstanceType<C[number]>)
            : new NodeFailure({
              pipeline: ctx.pipeline,
              node: ctx.entry,
              iteration: ctx.iteration,
              message: describe(e),
              cause: e
            })
      })
    })
}
