/**
 * What a replay from an entry skips (the entries upstream of it, except those computed once), which
 * of those it must restore (their outputs feed entries that run), and the stored metrics it copies.
 */
import * as path from "node:path"
import { type StoredFiles, storedFiles } from "../store/integrity.ts"
import { UsageError } from "./errors.ts"
import type { AnyPipeline } from "./pipeline.ts"
import { readManifest, readMetrics } from "./run-folder.ts"

export interface ReplayPlan {
  /** The entry the replay starts at. */
  readonly from: string
  /** The old stage name given instead of `from`, when one was (deprecated). */
  readonly deprecated: string | undefined
  readonly source: string
  readonly skipped: ReadonlySet<string>
  readonly restored: ReadonlySet<string>
  /** The stored metrics an entry logged at an iteration (also under its old names). */
  readonly metricsOf: (entry: string, iteration: number) => Readonly<Record<string, number>>
  /** The stored run's committed files, each checked against its recorded hash when read. */
  readonly files: StoredFiles
}

type Wiring = Record<string, { wiring: Record<string, string>; memoized?: true; restore?: unknown }>

const fail = (message: string): never => {
  throw new UsageError({ message })
}

/** Entries upstream of `from` that change between iterations (those computed once are reused). */
const upstreamOf = (nodes: Wiring, from: string): Set<string> => {
  const upstream = new Set<string>()
  const visit = (entry: string) => {
    for (const dep of Object.values(nodes[entry].wiring)) {
      if (nodes[dep] !== undefined && nodes[dep].memoized !== true && !upstream.has(dep)) {
        upstream.add(dep)
        visit(dep)
      }
    }
  }
  visit(from)
  return upstream
}

/**
 * Skipped: the upstream entries that can be restored. The others (entries that only reshape the
 * config, or draw the prompts) are recomputed, which is exact — and they are the inputs a restored
 * entry is regenerated from when the stored run did not keep its output.
 */
const skippedOf = (nodes: Wiring, upstream: ReadonlySet<string>): Set<string> =>
  new Set([...upstream].filter((e) => nodes[e].restore !== undefined))

export const planReplay = (
  pipeline: AnyPipeline,
  replay: { readonly source: string; readonly from: string }
): ReplayPlan => {
  const nodes = pipeline.nodes as Wiring
  const aliases = pipeline.aliases
  const from = nodes[replay.from] !== undefined ? replay.from : aliases[replay.from]
  if (from === undefined || nodes[from] === undefined) {
    fail(`replay: pipeline ${pipeline.name} has no entry "${replay.from}" (entries: ${Object.keys(nodes).join(", ")})`)
  }
  const skipped = skippedOf(nodes, upstreamOf(nodes, from))
  const restored = new Set<string>()
  for (const [entry, bound] of Object.entries(nodes)) {
    if (skipped.has(entry)) continue
    for (const dep of Object.values(bound.wiring)) if (skipped.has(dep)) restored.add(dep)
  }
  for (const entry of restored) {
    if (nodes[entry].restore === undefined) {
      fail(
        `replay: pipeline ${pipeline.name} cannot start at "${from}": ` +
          `the output of "${entry}" cannot be restored from a stored run`
      )
    }
  }
  const rows = readMetrics(path.join(replay.source, "metrics.jsonl"))
  // Runs stored before a stage was renamed logged its metrics under the old name.
  const entryOf = (
    node: string | undefined
  ) => (node === undefined ? undefined : nodes[node] !== undefined ? node : aliases[node])
  return {
    from,
    deprecated: from === replay.from ? undefined : replay.from,
    source: replay.source,
    files: storedFiles(replay.source, readManifest(replay.source).iterations_complete),
    skipped,
    restored,
    metricsOf: (entry, iteration) =>
      Object.fromEntries(
        rows.filter((r) => entryOf(r.node) === entry && r.iteration === iteration).map((r) => [r.name, r.value])
      )
  }
}
