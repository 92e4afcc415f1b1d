// The worker of random/prefetch.ts: draws each job's step noise, step after step, into shared memory.
// In the repository it runs the TypeScript sources through tsx (like store/commit-worker.mjs); in the
// installed package (dist/random/) the compiled streams.js sits beside it.
import { existsSync } from "node:fs"
import { parentPort } from "node:worker_threads"

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
