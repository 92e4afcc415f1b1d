// The commit worker of store/commit.ts: it runs the TypeScript sources through tsx like bin/etaflow.js.
import { parentPort } from "node:worker_threads"
import { register } from "tsx/esm/api"

register()
const { performCommit } = await import("./commit.ts")
parentPort.on("message", ({ id, job }) => {
  try {
    performCommit(job)
    parentPort.postMessage({ id })
  } catch (e) {
    parentPort.postMessage({ id, error: e instanceof Error ? e.message : String(e) })
  }
})
