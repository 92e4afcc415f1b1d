/**
 * RL iteration efficiency for the default MNIST Flow-GRPO config: model FLOPs of one iteration
 * (rollout forwards, the old-log-prob rescore, train steps at 3× a forward) ÷ (wall time × peak
 * SGEMM measured in the same run). The per-iteration time is the slope between a 1- and a
 * 4-iteration run (session building, caches and the final evaluation cancel out). Uses the model
 * cache (the first run pretrains the base model and the classifier).
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { runPipeline } from "../pipelines/kernel/run.ts"
import { flowGrpo } from "../pipelines/flow-grpo.ts"
import { PretrainSettings } from "../pipelines/pretrain.ts"
import { peakSgemm } from "./engine.ts"
import type { BenchLine } from "./line.ts"

const run = async (iterations: number) => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-bench-rl-")), "run")
  const t0 = performance.now()
  await Effect.runPromise(runPipeline(flowGrpo, { out, progress: "none", set: { iterations: String(iterations), evalEvery: "1000" } }) as Effect.Effect<unknown, unknown>)
  return (performance.now() - t0) / 1000
}

export const rlBench = async (emit: (line: BenchLine) => void): Promise<void> => {
  const c = Object.fromEntries(Object.entries(flowGrpo.settings).map(([k, s]) => [k, s.default])) as Record<string, number>
  const H = PretrainSettings.hidden.default
  const blocks = PretrainSettings.blocks.default
  const d = 784
  const F = 64
  // Multiply-adds of one forward row: input, time, blocks, output and skip projections.
  const flopsPerRow = 2 * (d * H + F * H + blocks * 2 * H * H + H * d + F * d)
  const trajectories = c.promptsPerIteration * c.groupSize
  const rows = trajectories * c.steps
  const forwards = rows + rows + (c.beta > 0 ? rows : 0) // rollout, rescore, reference
  const flops = (forwards + 3 * rows) * flopsPerRow
  await run(1) // warm the model cache and the JIT
  const t1 = await run(1)
  const t4 = await run(4)
  const perIteration = (t4 - t1) / 3
  const peak = await peakSgemm()
  emit({ name: "rl_iteration_seconds_flow_grpo_mnist", value: perIteration, unit: "s", detail: `${trajectories} trajectories × ${c.steps} steps` })
  emit({ name: "rl_iteration_model_gflop_flow_grpo_mnist", value: flops / 1e9, unit: "GFLOP" })
  emit({ name: "rl_iteration_efficiency_flow_grpo_mnist", value: flops / 1e9 / perIteration / peak, unit: "ratio", detail: "model FLOPs ÷ (wall time × peak SGEMM)" })
}
