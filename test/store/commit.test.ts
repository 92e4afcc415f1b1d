import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { commitInBackground, reusableBytes } from "../../store/commit.ts"
import { tempDir } from "../support/runs.ts"

describe("background commits", () => {
  it("hand an owned checkpoint's buffer back once it is written, for the next checkpoint to reuse", async () => {
    const dir = tempDir("commit-reuse")
    // A size no other test commits, so the buffer handed back is this one.
    const size = 3 * 1024 * 1024 + 24
    const bytes = reusableBytes(size)
    bytes.fill(5)
    await commitInBackground({
      tables: [],
      dirs: [{ dir: path.join(dir, "ckpt"), files: { "weights.safetensors": bytes }, owned: true }],
      files: [],
      commitPoint: { file: path.join(dir, "manifest.json"), data: "{}" }
    })
    // Moved to the worker, not copied: the caller's view is detached.
    expect(bytes.byteLength).toBe(0)
    expect(fs.readFileSync(path.join(dir, "ckpt", "weights.safetensors")).every((b) => b === 5)).toBe(true)
    // The same memory comes back (fresh memory would be zeros); a second request gets fresh memory.
    const again = reusableBytes(size)
    expect(again.byteLength).toBe(size)
    expect(again.every((b) => b === 5)).toBe(true)
    expect(reusableBytes(size).every((b) => b === 0)).toBe(true)
  })
})
