/**
 * Replay as a library: `Replay.fromRun(dir).from("update").with({ lr: "1e-4" })` re-runs a stored
 * run's pipeline from an entry onward into a new run folder, reading the upstream outputs from the
 * stored Parquet and checkpoints (see RunOptions.replay). The CLI's `etaflow replay` calls this.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { UsageError } from "../kernel/errors.ts"
import type { RunnablePipeline } from "../kernel/pipeline.ts"
import { type RunOptions, runPipeline } from "../kernel/run.ts"
import { findPipeline } from "./registry.ts"

export const Replay = {
  /** `pipeline`: the stored run's pipeline when it is not a registered one (defined in a script). */
  fromRun: (source: string, pipeline?: RunnablePipeline) => ({
    from: (entry: string) => ({
      with: (set: Readonly<Record<string, string>> = {}, options: Pick<RunOptions, "out" | "progress"> = {}) =>
        Effect.gen(function*() {
          const file = path.join(source, "manifest.json")
          const pipelineName = yield* Effect.try({
            try: () => (JSON.parse(fs.readFileSync(file, "utf8")) as { pipeline: string }).pipeline,
            catch: () =>
              new UsageError({ message: `replay: ${source} is not a run folder (${file} is missing or unreadable)` })
          })
          const found = pipeline ?? findPipeline(pipelineName)
          if (found === undefined) {
            return yield* new UsageError({
              message: `replay: ${source} was made by pipeline ${pipelineName}, which this etaflow does not have ` +
                `(pass the pipeline to Replay.fromRun when a script defines it)`
            })
          }
          if (found.name !== pipelineName) {
            return yield* new UsageError({
              message: `replay: ${source} was made by pipeline ${pipelineName}, not ${found.name}`
            })
          }
          return yield* runPipeline(found, { ...options, set, replay: { source, from: entry } })
        })
    })
  })
}
