// The commit worker of store/commit.ts. In the repository it runs the TypeScript sources through tsx
// (like bin/etaflow.js); in the installed package (dist/store/) the compiled commit.js sits beside it.
import { existsSync } from "node:fs"
import { setPriority } from "node:os"
import { parentPort } from "node:worker_threads"

// The lowest CPU priority, for this thread only (Linux): see random/normals-worker.mjs.
if (process.platform === "linux") {
  try {
    setPriority(19)
  } catch {}
}

const compiled = new URL("./commit.js", import.meta.url)
const load = async () => {
  if (existsSync(compiled)) return import(compiled.href)
  const { register } = await import("tsx/esm/api")
  register()
  return import("./commit.ts")
}
const { performCommit } = await load()
parentPort.on("message", ({ id, job }) => {
  try {
    performCommit(job)
    parentPort.postMessage({ id })
  } catch (e) {
    parentPort.postMessage({ id, error: e instanceof Error ? e.message : String(e) })
  }
})
