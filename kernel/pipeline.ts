/**
 * Pipelines: a record of bound nodes whose edges are checked by the compiler and, again, at
 * definition time (cycles, unwired inputs, unknown sources, duplicate names).
 *
 * Every pipeline has three sources its nodes may read: `config` (the resolved settings), `state`
 * (the iteration state threaded through an RL run) and `iteration` (the iteration index).
 * An iterative pipeline names the entry whose output holds the next iteration's state. What is
 * domain-specific stays with the pipeline: `onComplete` (e.g. writing the report) and `aliases`
 * (stage names of earlier releases that replay still accepts).
 *
 * ```ts
 * const sizes = Pipeline.define({
 *   name: "sizes",
 *   doc: "a data set and its size",
 *   settings: { name: Setting.literal(["double-ring"], "double-ring", "toy"), n: Setting.int(1000, "points") },
 *   nodes: {
 *     data: dataset.from({ config: "config" }).persist(Persist.once("data.parquet")),
 *     count: count.from({ table: "data" }) // count.from({ table: "count" }) would not compile
 *   }
 * })
 * const bigger = Pipeline.extend(sizes, { twice: double.from({ n: "count" }) })
 * ```
 */
import type { Effect } from "effect"
import type { ConfigOf, Settings } from "../schemas/settings.ts"
import type { AnyBound, Bound, Port } from "./node.ts"
import { fail, type Spec, validate } from "./pipeline-graph.ts"
import type { KernelServices } from "./services.ts"
import type { StopRule } from "./watch.ts"

type OutOf<B> = B extends Bound<any, infer O, any, any, any> ? O : never
type ErrOf<B> = B extends Bound<any, any, infer E, any, any> ? E : never
type ReqOf<B> = B extends Bound<any, any, any, infer R, any> ? R : never

/** What each name in a pipeline produces: the entries' outputs and the three sources. */
export type Env<S extends Spec, Cfg, St> = { readonly [K in keyof S]: OutOf<S[K]> } & {
  readonly config: Cfg
  readonly state: St
  readonly iteration: number
}

/** Shown by the compiler when an edge carries the wrong type. */
export interface EdgeTypeError<Edge extends string, Expected, Given> {
  readonly edgeTypeError: Edge
  readonly expected: Expected
  readonly given: Given
}
/** Shown by the compiler when an input reads from a name that is not in the pipeline. */
export interface UnknownSourceError<Edge extends string> {
  readonly unknownSource: Edge
}

type EdgeErrors<E, K extends string, B> = B extends Bound<infer In, any, any, any, infer W> ? {
    [I in keyof In & string]: I extends keyof W
      ? W[I] extends keyof E
        ? [E[W[I]]] extends [In[I]] ? never : EdgeTypeError<`${K}.${I} ← ${W[I] & string}`, In[I], E[W[I]]>
      : UnknownSourceError<`${K}.${I} ← ${W[I] & string}`>
      : never
  }[keyof In & string]
  : never

/** Each entry stays as it is when its edges type-check, and becomes the edge error otherwise. */
export type Checked<S extends Spec, Cfg, St> = {
  readonly [K in keyof S]: [EdgeErrors<Env<S, Cfg, St>, K & string, S[K]>] extends [never] ? S[K]
    : EdgeErrors<Env<S, Cfg, St>, K & string, S[K]>
}

interface StateCore<Cfg, St> {
  /** The state's type (`Port.of<MyState>()`); it fixes `St` before the functions below are checked. */
  readonly type: Port<St>
  /** The state before the first iteration (e.g. the pretrained weights). */
  readonly initial: (config: Cfg) => Effect.Effect<St, never, never>
  /** How the state is written into `checkpoints/iter-NNNNNN/` and read back on resume. */
  readonly encode: (state: St) => Readonly<Record<string, Uint8Array | string>>
  /**
   * `encode` returns buffers of its own (never views of the state's memory), so the commit moves them
   * to its worker instead of copying them on the main thread (docs/performance.md).
   */
  readonly encodesCopies?: boolean
  readonly decode: (files: Readonly<Record<string, Uint8Array>>, config: Cfg) => St
}

/** The entry whose output holds the next iteration's state, and how to take it from that output. */
type NextState<St, S extends Spec> = {
  readonly [K in keyof S & string]: {
    readonly next: K
    /** The state within the entry's output (default: the output is the state). */
    readonly select?: (output: OutOf<S[K]>) => St
  }
}[keyof S & string]

export type StateDef<Cfg, St, S extends Spec> = StateCore<Cfg, St> & NextState<St, S>

export interface Pipeline<Sets extends Settings = Settings, St = unknown, S extends Spec = Spec> {
  readonly name: string
  readonly doc: string
  readonly settings: Sets
  readonly nodes: S
  readonly iterations: (config: ConfigOf<Sets>) => number
  readonly state: StateDef<ConfigOf<Sets>, St, S> | undefined
  /** Facts for `meta/info.json` beyond what the kernel records (time convention, sampler …). */
  readonly info: (config: ConfigOf<Sets>) => Readonly<Record<string, unknown>>
  /** Entry names in execution order, grouped in levels whose members may run concurrently. */
  readonly levels: ReadonlyArray<ReadonlyArray<keyof S & string>>
  /** Old stage names `replay --from` still accepts (deprecated), to the entry they now name. */
  readonly aliases: Readonly<Record<string, keyof S & string>>
  /** Runs after a complete run with its folder and config (e.g. writes the report). */
  readonly onComplete: ((dir: string, config: ConfigOf<Sets>, note: (line: string) => void) => void) | undefined
  /** Which stored files a run keeps (default: all of them). */
  readonly retention: (config: ConfigOf<Sets>) => Retention
  /**
   * What is wrong with a config beyond each setting's own check (settings that do not go together,
   * files that do not exist), one message each; checked before any folder exists.
   */
  readonly check: (config: ConfigOf<Sets>) => ReadonlyArray<string>
  /** Rules that end a run early, as complete (kernel/watch.ts; default none). */
  readonly stopRules: (config: ConfigOf<Sets>) => ReadonlyArray<StopRule>
}

export type AnyPipeline = Pipeline<any, any, any>

/**
 * What a run keeps on disk. Outputs not kept are regenerated by replay: their entry's restore
 * returns undefined and the kernel runs the node again with the stored run's state (deterministic
 * given weights, seed and thread count). The newest checkpoint is always kept whole (resume needs it).
 */
export interface Retention {
  /** Whether iteration `iteration` (of `last + 1`) writes the per-iteration output under `dir`. */
  readonly keepOutput: (dir: string, iteration: number, last: number) => boolean
  /** Whether an older checkpoint keeps this file once a newer checkpoint has landed. */
  readonly keepInOlderCheckpoint: (file: string) => boolean
}

export const KEEP_ALL: Retention = { keepOutput: () => true, keepInOlderCheckpoint: () => true }

/** What a node may fail with in a pipeline the CLI can run: tagged errors a caller can catchTag on. */
export interface TaggedFailure {
  readonly _tag: string
  readonly message: string
}

/** A pipeline that runs as it is: its nodes fail with tagged errors and need only the kernel's services. */
export type RunnablePipeline = Pipeline<
  any,
  any,
  Readonly<Record<string, Bound<any, any, TaggedFailure, KernelServices, any>>>
>
export type PipelineError<P> = P extends Pipeline<any, any, infer S> ? ErrOf<S[keyof S]> : never
export type PipelineRequirements<P> = P extends Pipeline<any, any, infer S> ? Exclude<ReqOf<S[keyof S]>, KernelServices>
  : never

export interface PipelineDef<Sets extends Settings, St, S extends Spec> {
  readonly name: string
  readonly doc: string
  readonly settings: Sets
  readonly nodes: S & NoInfer<Checked<S, ConfigOf<Sets>, St>>
  readonly iterations?: (config: ConfigOf<Sets>) => number
  readonly state?: StateDef<ConfigOf<Sets>, St, S>
  readonly info?: (config: ConfigOf<Sets>) => Readonly<Record<string, unknown>>
  readonly aliases?: Readonly<Record<string, keyof S & string>>
  readonly onComplete?: (dir: string, config: ConfigOf<Sets>, note: (line: string) => void) => void
  readonly check?: (config: ConfigOf<Sets>) => ReadonlyArray<string>
  readonly retention?: (config: ConfigOf<Sets>) => Retention
  readonly stopRules?: (config: ConfigOf<Sets>) => ReadonlyArray<StopRule>
}

export const Pipeline = {
  define: <Sets extends Settings, const S extends Spec, St = undefined>(
    def: PipelineDef<Sets, St, S>
  ): Pipeline<Sets, St, S> => {
    const levels = validate(def.name, def.nodes, def.state?.next)
    return {
      name: def.name,
      doc: def.doc,
      settings: def.settings,
      nodes: def.nodes,
      iterations: def.iterations ?? (() => 1),
      state: def.state,
      info: def.info ?? (() => ({})),
      levels: levels as never,
      aliases: def.aliases ?? {},
      onComplete: def.onComplete,
      check: def.check ?? (() => []),
      retention: def.retention ?? (() => KEEP_ALL),
      stopRules: def.stopRules ?? (() => [])
    }
  },

  /** Adds entries to a pipeline; a name already taken is a definition error. */
  extend: <Sets extends Settings, St, S extends Spec, const X extends Spec>(
    base: Pipeline<Sets, St, S>,
    extra: X & NoInfer<Pick<Checked<S & X, ConfigOf<Sets>, St>, keyof X>>
  ): Pipeline<Sets, St, S & X> => {
    for (const name of Object.keys(extra)) {
      if (name in base.nodes) {
        fail(base.name, `duplicate name "${name}": the pipeline already has an entry of that name`)
      }
    }
    const nodes = { ...base.nodes, ...extra } as S & X
    return { ...base, nodes, levels: validate(base.name, nodes, base.state?.next) as never }
  },

  /** Swaps entries of a pipeline for others with the same names (a new experiment from old nodes). */
  replace: <
    Sets extends Settings,
    St,
    S extends Spec,
    const X extends { readonly [K in keyof X]: K extends keyof S ? AnyBound : never }
  >(
    base: Pipeline<Sets, St, S>,
    patch: X & NoInfer<Pick<Checked<Omit<S, keyof X> & X, ConfigOf<Sets>, St>, keyof X & keyof S>>,
    name?: string
  ): Pipeline<Sets, St, Omit<S, keyof X> & X> => {
    const nodes = { ...base.nodes, ...patch } as unknown as Omit<S, keyof X> & X
    const newName = name ?? base.name
    return {
      ...base,
      name: newName,
      nodes,
      state: base.state as never,
      aliases: base.aliases as never,
      levels: validate(newName, nodes, base.state?.next) as never
    }
  }
}
