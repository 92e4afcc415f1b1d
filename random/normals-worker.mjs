// The worker of random/prefetch.ts: draws each job's step noise, step after step, into shared memory.
// In the repository it runs the TypeScript sources through tsx (like store/commit-worker.mjs); in the
// installed package (dist/random/) the compiled streams.js sits beside it.
import { existsSync } from "node:fs"
import { setPriority } from "node:os"
import { parentPort } from "node:worker_threads"

// Background work yields to the compute threads: at the lowest CPU priority (Linux nice 19, this thread
// only) the scheduler gives it the cores onnxruntime and the main thread leave idle, instead of taking a
// core from an op whose other thread then waits at the join. Measured in the adjoint-matching pipeline
// on 2 cores (interleaved runs): rollout 225–263 → 193–219 ms, iteration ~700 → ~610 ms. Lowering
// needs no privilege; where it is refused, the worker keeps normal priority. Linux only: elsewhere
// (macOS) the call would lower the whole process, main thread included.
if (process.platform === "linux") {
  try {
    setPriority(19)
  } catch {}
}

const compiled = new URL("./streams.js", import.meta.url)
const load = async () => {
  if (existsSync(compiled)) return import(compiled.href)
  const { register } = await import("tsx/esm/api")
  register()
  return import("./streams.ts")
}
const { streamFromState } = await load()
// states, normals and progress are views of shared memory (Int32Array, Float64Array, Int32Array).
parentPort.on("message", ({ states, stochastic, d, normals, progress }) => {
  const chains = states.length / 4
  const streams = Array.from({ length: chains }, (_, j) => streamFromState(states.subarray(4 * j, 4 * j + 4)))
  for (let k = 0; k < stochastic.length; k++) {
    if (stochastic[k]) {
      for (let j = 0; j < chains; j++) {
        streams[j].fillNormal(normals.subarray((k * chains + j) * d, (k * chains + j + 1) * d))
      }
    }
    Atomics.store(progress, 0, k + 1)
    Atomics.notify(progress, 0)
  }
  parentPort.postMessage("done")
})
