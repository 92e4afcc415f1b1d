// The commit worker of store/commit.ts. In the repository it runs the TypeScript sources through tsx
// (like bin/etaflow.js); in the installed package (dist/store/) the compiled commit.js sits beside it.
import { existsSync } from "node:fs"
import { parentPort } from "node:worker_threads"

const compiled = new URL("./commit.js", import.meta.url)
const load = async () => {
  if (existsSync(compiled)) return import(compiled.href)
  const { register } = await import("tsx/esm/api")
  register()
  return import("./commit.ts")
}
const { performCommit } = await load()
// Owned checkpoint files go back to the main thread once written, for its next checkpoint to reuse.
const owned = (job) =>
  job.dirs.filter((d) => d.owned === true).flatMap((d) =>
    Object.values(d.files).filter((f) => f instanceof Uint8Array && f.byteLength === f.buffer.byteLength)
  ).map((f) => f.buffer)
parentPort.on("message", ({ id, job }) => {
  const returned = [...new Set(owned(job))]
  try {
    performCommit(job)
    parentPort.postMessage({ id, returned }, returned)
  } catch (e) {
    parentPort.postMessage({ id, error: e instanceof Error ? e.message : String(e), returned }, returned)
  }
})
