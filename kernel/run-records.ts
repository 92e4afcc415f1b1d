/**
 * What a run's folder and stderr say when a run ends other than by running to its last iteration: an
 * interrupt or a failure recorded in the manifest (after the commit in flight), a stop by its `stopWhen`
 * rules, and the version drift of a resume or a replay.
 */
import { Cause, Console, Effect, Exit } from "effect"
import * as path from "node:path"
import { messageOf } from "../schemas/message.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import type { Committer } from "./committer.ts"
import type { Journal, RunContext } from "./iteration.ts"
import { cleanUncommitted, manifestText, now, readManifest } from "./run-folder.ts"
import { latestVersions } from "./run-setup.ts"
import { formatVersionChanges, type VersionChange, versionChanges } from "./versions.ts"
import { type StopRule, unseenRules } from "./watch.ts"

const describe = (e: unknown) => messageOf(e)

/**
 * After an interrupt (SIGINT, SIGTERM): the commit in flight lands, what the interrupted iteration
 * wrote goes, and the manifest says `interrupted`; resume continues after the last committed iteration.
 */
export const recordInterrupt = (
  ctx: RunContext,
  journal: Journal,
  committer: Committer,
  written: ReadonlyArray<string>
) =>
  Effect.gen(function*() {
    yield* Effect.exit(committer.await)
    committer.remove(written)
    cleanUncommitted(ctx.dir, committer.committed(), path.join(ctx.dir, "metrics.jsonl"))
    journal.manifest = {
      ...journal.manifest,
      iterations_complete: committer.committed(),
      status: "interrupted",
      updated_at: now()
    }
    writeFileAtomic(path.join(ctx.dir, "manifest.json"), manifestText(journal.manifest))
    ctx.progress.finish()
  }).pipe(Effect.ignore)

/** After a failed iteration: the commit in flight lands (or fails) first, then the failure is recorded. */
export const recordFailure = (
  ctx: RunContext,
  journal: Journal,
  committer: Committer,
  written: ReadonlyArray<string>,
  cause: Cause.Cause<unknown>
) =>
  Effect.gen(function*() {
    const landed = yield* Effect.exit(committer.await)
    committer.remove(written)
    cleanUncommitted(ctx.dir, committer.committed(), path.join(ctx.dir, "metrics.jsonl"))
    const failure = Exit.isFailure(landed) ? landed.cause : cause
    const error = Cause.squash(failure)
    journal.manifest = {
      ...journal.manifest,
      iterations_complete: committer.committed(),
      status: "failed",
      updated_at: now(),
      error: describe(error)
    }
    writeFileAtomic(path.join(ctx.dir, "manifest.json"), manifestText(journal.manifest))
    ctx.progress.finish()
    return yield* Effect.failCause(failure)
  })

/**
 * One line on stderr when a resume (`changed`) or a replay (against its source) runs under other versions
 * than the stored iterations were computed with: the run goes on, but no longer promises a one-go run's bits.
 */
export const warnVersionChanges = (dir: string, changed: ReadonlyArray<VersionChange>, source: string | undefined) => {
  if (changed.length > 0) {
    return Console.error(
      `etaflow: warning: resuming ${dir} under ${formatVersionChanges(changed)} (recorded in its manifest); ` +
        "its next iterations may differ in the last bits from a run made in one go"
    )
  }
  if (source === undefined) return Effect.void
  const drift = versionChanges(latestVersions(readManifest(source)))
  return drift.length === 0 ? Effect.void : Console.error(
    `etaflow: warning: replaying ${source} under ${formatVersionChanges(drift)}; ` +
      "recomputed entries may differ in the last bits from the stored run"
  )
}

/** The line a run ends with when its rules stopped it early, or when one of them named a metric never logged. */
export const noteStop = (
  rules: ReadonlyArray<StopRule>,
  journal: Journal,
  stopped: { readonly iteration: number; readonly reason: string } | undefined
) =>
  Effect.gen(function*() {
    if (stopped !== undefined && journal.manifest.stopped === undefined) {
      yield* Console.error(`etaflow: stopped after iteration ${stopped.iteration}: ${stopped.reason}`)
    }
    const unseen = unseenRules(rules, journal.allMetrics)
    if (unseen.length > 0) {
      yield* Console.error(`etaflow: warning: stopWhen names metrics this run never logged: ${unseen.join(", ")}`)
    }
  })
