/**
 * Kernel overhead: the cost the DAG kernel adds per node call (input gathering, service
 * provision, span, metrics check), measured as the slope of iteration time over chain length, and
 * compared with one iteration of the smallest real pipeline.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Node, Port } from "../kernel/node.ts"
import { type AnyPipeline, Pipeline } from "../kernel/pipeline.ts"
import { runPipeline } from "../kernel/run.ts"
import { datasetPipeline } from "../pipelines/dataset.ts"
import { Setting } from "../schemas/settings.ts"
import type { BenchLine } from "./line.ts"

const first = Node.make({
  name: "first",
  doc: "",
  inputs: { iteration: Port.of<number>() },
  run: ({ iteration }) => Effect.succeed(iteration)
})
const link = Node.make({
  name: "link",
  doc: "",
  inputs: { x: Port.of<number>() },
  run: ({ x }) => Effect.succeed(x + 1),
  metrics: (x) => ({ [`x${x % 7}`]: x })
})

const chain = (length: number) => {
  const nodes: Record<string, unknown> = { n0: first.from({ iteration: "iteration" }) }
  for (let i = 1; i < length; i++) {
    nodes[`n${i}`] = Node.make({ ...link, name: `link${i}`, metrics: () => ({}) }).from({ x: `n${i - 1}` })
  }
  // Assembled at run time, so the edges are checked by `validate` only, not by the compiler.
  return Pipeline.define({
    name: `chain-${length}`,
    doc: "",
    settings: { iterations: Setting.int(20, "") },
    nodes: nodes as never,
    iterations: (c) => c.iterations
  }) as unknown as AnyPipeline
}

const tmpDir = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-bench-")), "run")

const timeRun = async (p: Parameters<typeof runPipeline>[0], set: Record<string, string>) => {
  const t0 = performance.now()
  await Effect.runPromise(runPipeline(p, { out: tmpDir(), progress: "none", set }) as Effect.Effect<unknown>)
  return (performance.now() - t0) / 1000
}

export const kernelBench = async (emit: (line: BenchLine) => void): Promise<void> => {
  const iterations = 20
  const short = 2
  const long = 202
  await timeRun(chain(short), { iterations: "2" }) // warm-up: module loading, JIT
  const tShort = Math.min(
    await timeRun(chain(short), { iterations: String(iterations) }),
    await timeRun(chain(short), { iterations: String(iterations) })
  )
  const tLong = Math.min(
    await timeRun(chain(long), { iterations: String(iterations) }),
    await timeRun(chain(long), { iterations: String(iterations) })
  )
  const perNode = (tLong - tShort) / ((long - short) * iterations)
  const perIterationCommit = tShort / iterations
  await timeRun(datasetPipeline, { name: "double-ring", n: "10000" })
  const smallest = Math.min(
    await timeRun(datasetPipeline, { name: "double-ring", n: "10000" }),
    await timeRun(datasetPipeline, { name: "double-ring", n: "10000" })
  )
  const nodesInSmallest = Object.keys(datasetPipeline.nodes).length
  ;[
    { name: "kernel_overhead_per_node_call_us", value: perNode * 1e6, unit: "us" },
    { name: "kernel_iteration_commit_ms", value: perIterationCommit * 1e3, unit: "ms" },
    {
      name: "smallest_pipeline_iteration_ms",
      value: smallest * 1e3,
      unit: "ms",
      detail: "dataset double-ring n=10000, one iteration incl. commit"
    },
    {
      name: "kernel_overhead_fraction_of_smallest_iteration",
      value: (perNode * nodesInSmallest) / smallest,
      unit: "ratio"
    }
  ].forEach(emit)
}
