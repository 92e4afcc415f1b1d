/**
 * Replay as a library: `Replay.fromRun(dir).from("update").with({ lr: "1e-4" })` re-runs a stored
 * run's pipeline from an entry onward into a new run folder, reading the upstream outputs from the
 * stored Parquet and checkpoints (see RunOptions.replay). The CLI's `etaflow replay` calls this.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { UsageError } from "../kernel/errors.ts"
import { type RunOptions, runPipeline } from "../kernel/run.ts"
import { findPipeline } from "./registry.ts"

export const Replay = {
  fromRun: (source: string) => ({
    from: (entry: string) => ({
      with: (set: Readonly<Record<string, string>> = {}, options: Pick<RunOptions, "out" | "progress"> = {}) =>
        Effect.gen(function*() {
          const file = path.join(source, "manifest.json")
          const pipelineName = yield* Effect.try({
            try: () => (JSON.parse(fs.readFileSync(file, "utf8")) as { pipeline: string }).pipeline,
            catch: () =>
              new UsageError({ message: `replay: ${source} is not a run folder (${file} is missing or unreadable)` })
          })
          const pipeline = findPipeline(pipelineName)
          if (pipeline === undefined) {
            return yield* new UsageError({
              message: `replay: ${source} was made by pipeline ${pipelineName}, which this etaflow does not have`
            })
          }
          return yield* runPipeline(pipeline, { ...options, set, replay: { source, from: entry } })
        })
    })
  })
}
