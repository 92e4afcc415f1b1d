/**
 * The commits of a run, written by the commit worker while the next iteration computes. At most one
 * is in flight: `await` lands it (or fails with its error, removing what it wrote) before the next
 * is submitted, before a failure is recorded and before the run ends.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import { commitInBackground, type CommitJob } from "../store/commit.ts"
import { asStoreError, type NodeFailure, type NonFiniteError, type StoreError, type UsageError } from "./errors.ts"

export interface Committer {
  /** Iterations whose commit has landed. */
  readonly committed: () => number
  readonly await: Effect.Effect<void, UsageError | NonFiniteError | NodeFailure | StoreError>
  readonly submit: (iteration: number, job: CommitJob, written: ReadonlyArray<string>, landed: () => void) => void
  /** Removes what a failed commit or iteration wrote; a path that cannot go is left to resume's clean-up. */
  readonly remove: (files: ReadonlyArray<string>) => void
}

export const makeCommitter = (dir: string, complete: number): Committer => {
  let committed = complete
  let inFlight:
    | { readonly iteration: number; readonly done: Promise<void>; readonly written: ReadonlyArray<string> }
    | undefined
  const remove = (files: ReadonlyArray<string>) => {
    for (const f of files) {
      try {
        fs.rmSync(f, { recursive: true, force: true })
      } catch {
        // resume removes uncommitted iterations' files by name
      }
    }
  }
  // Uninterruptible: the worker writes on whatever happens to the run, so an interrupt waits for the job
  // to land (under a second) rather than forget it, which let the interrupted run's clean-up race the
  // worker's pruning of the older checkpoint and leave a resume with a checkpoint without moments.
  const await_ = Effect.uninterruptible(Effect.suspend(() => {
    const job = inFlight
    if (job === undefined) return Effect.void
    return Effect.tryPromise({ try: () => job.done, catch: asStoreError(dir) }).pipe(
      Effect.tap(() => Effect.sync(() => (committed = job.iteration + 1))),
      Effect.tapError(() => Effect.sync(() => remove(job.written))),
      Effect.ensuring(Effect.sync(() => (inFlight = undefined)))
    )
  }))
  return {
    committed: () => committed,
    await: await_,
    submit: (iteration, job, written, landed) => {
      const done = commitInBackground(job).then(landed)
      // Its failure (a full disk) is taken by `await`; until then it must not count as unhandled, which
      // would end the process before the failure is recorded.
      done.catch(() => {})
      inFlight = { iteration, done, written }
    },
    remove
  }
}
