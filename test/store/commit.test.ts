import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { commitInBackground, reusableBytes } from "../../store/commit.ts"
import { tempDir } from "../support/runs.ts"
import { callingThreadNice, threadNices } from "../support/threads.ts"

describe("background commits", () => {
  it("free an owned checkpoint's memory once its commit has landed, never before", async () => {
    const dir = tempDir("commit-reuse")
    // A size no other test commits, so the memory freed is this one.
    const size = 3 * 1024 * 1024 + 24
    const bytes = reusableBytes(size)
    bytes.fill(5)
    const landed = commitInBackground({
      tables: [],
      dirs: [{ dir: path.join(dir, "ckpt"), files: { "weights.safetensors": bytes }, owned: true }],
      files: [],
      commitPoint: { file: path.join(dir, "manifest.json"), data: "{}" }
    })
    // In flight: the worker still reads it, so a request gets other (new, zeroed) memory.
    const meanwhile = reusableBytes(size)
    expect(meanwhile.every((b) => b === 0)).toBe(true)
    await landed
    expect(fs.readFileSync(path.join(dir, "ckpt", "weights.safetensors")).every((b) => b === 5)).toBe(true)
    // The same memory comes back (new memory would be zeros); a second request gets new memory.
    const again = reusableBytes(size)
    expect(again.byteLength).toBe(size)
    expect(again.every((b) => b === 5)).toBe(true)
    expect(reusableBytes(size).every((b) => b === 0)).toBe(true)
  })

  it.skipIf(process.platform !== "linux")(
    "run in a worker at the lowest CPU priority, its own thread only",
    async () => {
      const dir = tempDir("commit-nice")
      await commitInBackground({
        tables: [],
        dirs: [],
        files: [{ file: path.join(dir, "a.txt"), data: "a" }],
        commitPoint: { file: path.join(dir, "manifest.json"), data: "{}" }
      })
      expect(threadNices()).toContain(19)
      expect(callingThreadNice()).toBe(0)
    }
  )
})
