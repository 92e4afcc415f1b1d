/**
 * Services the kernel provides to every node call: where it runs (NodeContext), its random
 * streams (Rng), and the run folder (RunStore).
 */
import type * as arrow from "apache-arrow"
import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { openStream, type RandomStream } from "../random/streams.ts"
import { messageOf } from "../schemas/message.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { fromParquet, toParquet } from "../store/parquet.ts"
import { StoreError } from "./errors.ts"

/** Which pipeline, entry and iteration a node call belongs to. */
export class NodeContext extends Context.Service<NodeContext, {
  readonly pipeline: string
  readonly entry: string
  readonly iteration: number
  readonly seed: number
  /** Reports progress from inside the node (a line on the run's progress display, if any). */
  readonly note: (line: string) => void
}>()("etaflow/NodeContext") {
  /** A reporter that says where a long loop stands at most every `seconds` (and at its end). */
  static readonly throttled = (note: (line: string) => void, total: number, what: string, seconds = 5) => {
    const start = performance.now()
    let last = start
    return (done: number, detail: string) => {
      const now = performance.now()
      if (now - last < seconds * 1000 && done < total) return
      last = now
      const rate = done / Math.max((now - start) / 1000, 1e-9)
      const eta = (total - done) / Math.max(rate, 1e-9)
      note(`${what} ${done}/${total} ${detail} ${rate.toFixed(1)}/s ETA ${eta.toFixed(0)}s`)
    }
  }
}

/**
 * Random streams of a node call, keyed by (seed, iteration, entry, name): independent across
 * entries and iterations, and reproducible on resume and replay without stored generator state.
 */
export class Rng extends Context.Service<Rng, {
  readonly stream: (...name: ReadonlyArray<string | number>) => RandomStream
}>()("etaflow/Rng") {
  static readonly forCall = (seed: number, iteration: number, entry: string) =>
    Rng.of({ stream: (...name) => openStream([seed, "iter", iteration, entry, ...name]) })
}

/** The run folder: atomic writes, Parquet tables, JSON documents; every error names its file. */
export class RunStore extends Context.Service<RunStore, {
  readonly dir: string
  readonly path: (rel: string) => string
  readonly exists: (rel: string) => boolean
  readonly writeTable: (rel: string, table: arrow.Table) => Effect.Effect<void, StoreError>
  readonly readTable: (rel: string) => Effect.Effect<arrow.Table, StoreError>
  readonly writeJson: (rel: string, value: unknown) => Effect.Effect<void, StoreError>
  readonly readJson: (rel: string) => Effect.Effect<unknown, StoreError>
}>()("etaflow/RunStore") {
  static readonly make = (dir: string): RunStore["Service"] => {
    const abs = (rel: string) => path.join(dir, rel)
    const attempt = <A>(rel: string, f: () => A) =>
      Effect.try({
        try: f,
        catch: (e) => new StoreError({ file: abs(rel), message: messageOf(e) })
      })
    return RunStore.of({
      dir,
      path: abs,
      exists: (rel) => fs.existsSync(abs(rel)),
      writeTable: Effect.fn("RunStore.writeTable")(function*(rel: string, table: arrow.Table) {
        yield* Effect.annotateCurrentSpan({ file: rel, rows: table.numRows })
        yield* attempt(rel, () => writeFileAtomic(abs(rel), toParquet(table)))
      }),
      readTable: Effect.fn("RunStore.readTable")(function*(rel: string) {
        yield* Effect.annotateCurrentSpan({ file: rel })
        return yield* attempt(rel, () => fromParquet(fs.readFileSync(abs(rel)), abs(rel)))
      }),
      writeJson: (rel, value) => attempt(rel, () => writeFileAtomic(abs(rel), JSON.stringify(value, null, 2) + "\n")),
      readJson: (rel) => attempt(rel, () => JSON.parse(fs.readFileSync(abs(rel), "utf8")) as unknown)
    })
  }
  static readonly layer = (dir: string) => Layer.succeed(RunStore, RunStore.make(dir))
}

export type KernelServices = NodeContext | Rng | RunStore
