import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { makeCommitter } from "../../kernel/committer.ts"
import { tempDir } from "../support/runs.ts"

describe("the committer", () => {
  it.effect("lands the commit in flight even when the wait for it is interrupted", () =>
    Effect.gen(function*() {
      const dir = tempDir("committer")
      const committer = makeCommitter(dir, 3)
      // 32 MB of checkpoint: long enough in the worker that the interrupt arrives while it writes.
      const big = new Uint8Array(32 << 20).fill(7)
      const job = {
        tables: [],
        dirs: [{ dir: path.join(dir, "checkpoints/iter-000003"), files: { "state.bin": big } }],
        files: [],
        commitPoint: { file: path.join(dir, "manifest.json"), data: "{\"iterations_complete\":4}" }
      }
      committer.submit(3, job, [], () => undefined)
      const waiting = yield* Effect.forkChild(committer.await, { startImmediately: true })
      yield* Fiber.interrupt(waiting)
      // Had the interrupt abandoned the job, the run's clean-up would believe iteration 3 uncommitted
      // while the worker still wrote it.
      expect(committer.committed()).toBe(4)
      expect(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")).toBe("{\"iterations_complete\":4}")
      expect(fs.statSync(path.join(dir, "checkpoints/iter-000003/state.bin")).size).toBe(32 << 20)
    }))
})
