/**
 * `npm run bench`: every benchmark, one JSON line per result on stdout. Arguments pick suites
 * (`rl`, `engine`, `kernel`, `cluster` — the last needs PostgreSQL on 127.0.0.1:5432); any other
 * argument picks the RL benchmarks whose label contains it (`npm run bench -- rl adjoint`).
 */
import { clusterBench } from "./cluster.ts"
import { engineBench } from "./engine.ts"
import { kernelBench } from "./kernel.ts"
import type { BenchLine } from "./line.ts"
import { peerBench, rlBench } from "./rl.ts"

const args = process.argv.slice(2)
const labels = args.filter((a) => !["kernel", "engine", "rl", "cluster"].includes(a))
const suites: Record<string, (emit: (line: BenchLine) => void) => Promise<void>> = {
  kernel: kernelBench,
  engine: engineBench,
  rl: async (emit) => {
    await rlBench(emit, labels)
    if (labels.length === 0 || labels.some((l) => "flow_grpo_tiny_unet".includes(l))) await peerBench(emit)
  },
  cluster: clusterBench
}
const only = args.filter((a) => a in suites)

for (const [name, suite] of Object.entries(suites)) {
  if (only.length > 0 && !only.includes(name)) continue
  await suite((line) => console.log(JSON.stringify(line)))
}
