/** `npm run bench`: every benchmark, one JSON line per result on stdout. */
import { engineBench } from "./engine.ts"
import { kernelBench } from "./kernel.ts"
import type { BenchLine } from "./line.ts"
import { rlBench } from "./rl.ts"

const suites: Record<string, (emit: (line: BenchLine) => void) => Promise<void>> = {
  kernel: kernelBench,
  engine: engineBench,
  rl: rlBench
}
const only = process.argv.slice(2)

for (const [name, suite] of Object.entries(suites)) {
  if (only.length > 0 && !only.includes(name)) continue
  await suite((line) => console.log(JSON.stringify(line)))
}
