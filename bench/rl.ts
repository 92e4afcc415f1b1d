/**
 * RL iteration efficiency of the default MNIST configs (the quickstart, i.e. SDPO, and Flow-GRPO):
 * model FLOPs of one iteration ÷ (wall time × peak SGEMM measured in the same run). Model FLOPs
 * count the policy network only: the rollout forwards, the old-log-prob rescore, the KL reference
 * forward when β > 0, and each train row at 3× a forward (the reward classifier's calls are left
 * out). The per-iteration time is the slope between a 1- and a 4-iteration run, so session building,
 * caches and the final evaluation cancel out; `evalEvery` is raised past the run (evaluation is a
 * separate cost, every `evalEvery` iterations). Uses the model cache (a first run pretrains).
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { runPipeline } from "../pipelines/kernel/run.ts"
import { flowGrpo } from "../pipelines/flow-grpo.ts"
import { quickstart } from "../pipelines/quickstart.ts"
import { PretrainSettings } from "../pipelines/pretrain.ts"
import type { AnyPipeline } from "../pipelines/kernel/pipeline.ts"
import { peakSgemm } from "./engine.ts"
import type { BenchLine } from "./line.ts"

const run = async (pipeline: AnyPipeline, iterations: number) => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-bench-rl-")), "run")
  const t0 = performance.now()
  await Effect.runPromise(runPipeline(pipeline, { out, progress: "none", set: { iterations: String(iterations), evalEvery: "1000" } }) as Effect.Effect<unknown, unknown>)
  const seconds = (performance.now() - t0) / 1000
  fs.rmSync(path.dirname(out), { recursive: true, force: true })
  return seconds
}

/** Multiply-adds ×2 of one forward row of the default MNIST network: input, time, blocks, output and skip projections. */
const flopsPerRow = () => {
  const H = PretrainSettings.hidden.default
  const blocks = PretrainSettings.blocks.default
  const d = 784
  const F = 64
  return 2 * (d * H + F * H + blocks * 2 * H * H + H * d + F * d)
}

const measure = async (pipeline: AnyPipeline, label: string, peak: () => Promise<number>, emit: (line: BenchLine) => void) => {
  const c = Object.fromEntries(Object.entries(pipeline.settings).map(([k, s]) => [k, (s as { default: unknown }).default])) as Record<string, number>
  const trajectories = c.promptsPerIteration * c.groupSize
  // Every step of the default samplers is stochastic, so every transition is a train row.
  const rows = trajectories * c.steps
  const forwards = rows + rows + (c.beta > 0 ? rows : 0) // rollout, rescore, reference
  const flops = (forwards + 3 * rows) * flopsPerRow()
  await run(pipeline, 1) // warm the model cache and the JIT
  const t1 = await run(pipeline, 1)
  const t4 = await run(pipeline, 4)
  const perIteration = (t4 - t1) / 3
  const p = await peak()
  emit({ name: `rl_iteration_seconds_${label}`, value: perIteration, unit: "s", detail: `${trajectories} trajectories × ${c.steps} steps` })
  emit({ name: `rl_iteration_model_gflop_${label}`, value: flops / 1e9, unit: "GFLOP" })
  emit({ name: `rl_iteration_efficiency_${label}`, value: flops / 1e9 / perIteration / p, unit: "ratio", detail: `model FLOPs ÷ (wall time × peak SGEMM ${p.toFixed(0)} GFLOP/s)` })
}

export const rlBench = async (emit: (line: BenchLine) => void): Promise<void> => {
  // Peak SGEMM is measured next to each pipeline's timing, so both see the machine in the same state.
  await measure(quickstart, "quickstart_sdpo_mnist", peakSgemm, emit)
  await measure(flowGrpo, "flow_grpo_mnist", peakSgemm, emit)
}
