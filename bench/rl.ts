/**
 * RL iteration efficiency of the default MNIST configs (the quickstart, i.e. SDPO, Flow-GRPO and adjoint
 * matching): necessary model FLOPs of one iteration (`gflopOf`, `adjointGflopOf`) ÷ (wall time × peak
 * SGEMM measured in the same run); the reward classifier counts 1 forward per trajectory, SDPO's dense
 * reward 3, adjoint matching's reward gradient 2 (forward and input backward). The per-iteration
 * time is the slope between a 2- and a 10-iteration run, so session building, caches and the final
 * evaluation cancel out (a 1-to-4 slope spread one day's reps from 0.40 to 0.75); `evalEvery` is
 * raised past the run (evaluation is a separate cost, every `evalEvery` iterations). Uses the model
 * cache (a first run pretrains).
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { AnyPipeline } from "../kernel/pipeline.ts"
import { runPipeline } from "../kernel/run.ts"
import { adjointMatching } from "../pipelines/adjoint-matching.ts"
import { flowGrpo } from "../pipelines/flow-grpo.ts"
import { PretrainSettings } from "../pipelines/pretrain.ts"
import { quickstart } from "../pipelines/quickstart.ts"
import { RewardModelSettings } from "../pipelines/reward-model.ts"
import { median, peakSgemm } from "./engine.ts"
import type { BenchLine } from "./line.ts"

const run = async (pipeline: AnyPipeline, iterations: number) => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-bench-rl-")), "run")
  const t0 = performance.now()
  await Effect.runPromise(
    runPipeline(pipeline, {
      out,
      progress: "none",
      set: { iterations: String(iterations), evalEvery: "1000" }
    }) as Effect.Effect<unknown, unknown>
  )
  const seconds = (performance.now() - t0) / 1000
  fs.rmSync(path.dirname(out), { recursive: true, force: true })
  return seconds
}

const D = 784
/** Multiply-adds ×2 of one forward row of the default MNIST network: input, time, blocks, output, skip. */
const flopsPerRow = () => {
  const H = PretrainSettings.hidden.default
  const blocks = PretrainSettings.blocks.default
  const F = 64
  return 2 * (D * H + F * H + blocks * 2 * H * H + H * D + F * D)
}
/** The same for one sample through the default reward classifier. */
const classifierFlops = () => {
  const H = RewardModelSettings.hidden.default
  return 2 * (D * H + (RewardModelSettings.layers.default - 1) * H * H + H * 10)
}

/**
 * Necessary model GFLOP of one iteration of a pipeline's default config: the rollout's forwards
 * (every step), the trained rows (⌊N·timestepFraction⌋ steps per trajectory) at 3× a forward, the
 * KL reference's forward on the trained rows when β > 0, and the reward model's forwards. The
 * re-score of old log-probs is not counted: the references use the stored ones, and so does the
 * update unless `rescoreOldLogProb` asks for a diagnosis.
 */
const defaults = (pipeline: AnyPipeline) =>
  Object.fromEntries(
    Object.entries(pipeline.settings).map(([k, s]) => [k, (s as { default: unknown }).default])
  ) as Record<string, number>

const gflopOf = (pipeline: AnyPipeline, rewardCalls: number) => {
  const c = defaults(pipeline)
  const trajectories = c.promptsPerIteration * c.groupSize
  const rollout = trajectories * c.steps
  // Every step of the default samplers is stochastic, so the fraction alone decides the trained rows.
  const trained = trajectories * Math.max(1, Math.floor(c.steps * c.timestepFraction + 1e-9))
  const forwards = rollout + (c.beta > 0 ? trained : 0) + 3 * trained
  return {
    gflop: (forwards * flopsPerRow() + rewardCalls * trajectories * classifierFlops()) / 1e9,
    detail: `${trajectories} trajectories × ${c.steps} steps, ${trained / trajectories} trained`
  }
}

/**
 * Adjoint matching's necessary model GFLOP per iteration: the rollout's forwards, one VJP per step of
 * the adjoint window (a forward and an input-gradient pass, 2× a forward; its forward is the base
 * output the loss reuses), the reward's gradient (2× a classifier forward) and the trained rows (2 + 2
 * time indices per trajectory, 3× a forward).
 */
const adjointGflopOf = (pipeline: AnyPipeline) => {
  const c = defaults(pipeline)
  const trajectories = c.promptsPerIteration * c.groupSize
  const window = c.adjointSteps === 0 ? c.steps : Math.min(c.adjointSteps, c.steps)
  const rows = Math.min(4, window)
  const forwards = trajectories * (c.steps + 2 * window + 3 * rows)
  return {
    gflop: (forwards * flopsPerRow() + 2 * trajectories * classifierFlops()) / 1e9,
    detail: `${trajectories} trajectories × ${c.steps} steps, adjoint over ${window}, ${rows} trained`
  }
}

/**
 * This machine's speed drifts by up to ±25 % within minutes, so each timing (the slope between a
 * 2- and a 10-iteration run) is paired with peak SGEMM measured just before and after it, the higher
 * of the two taken (never flattering); the efficiency reported is the median of five such pairs.
 */
export const rlBench = async (emit: (line: BenchLine) => void, labels: ReadonlyArray<string> = []): Promise<void> => {
  const measured = [
    ["quickstart_sdpo_mnist", quickstart, () => gflopOf(quickstart, 3)],
    ["flow_grpo_mnist", flowGrpo, () => gflopOf(flowGrpo, 1)],
    ["adjoint_matching_mnist", adjointMatching, () => adjointGflopOf(adjointMatching)]
  ] as const
  for (const [label, pipeline, work] of measured) {
    if (labels.length > 0 && !labels.some((l) => label.includes(l))) continue
    const { gflop, detail } = work()
    await run(pipeline, 1) // warm the model cache and the JIT
    const reps: Array<{ seconds: number; peak: number; efficiency: number }> = []
    for (let r = 0; r < 5; r++) {
      const before = await peakSgemm()
      const [few, many] = [2, 10]
      const tFew = await run(pipeline, few)
      const tMany = await run(pipeline, many)
      const peak = Math.max(before, await peakSgemm())
      const seconds = (tMany - tFew) / (many - few)
      reps.push({ seconds, peak, efficiency: gflop / seconds / peak })
    }
    const mid = reps.find((r) => r.efficiency === median(reps.map((q) => q.efficiency)))!
    emit({ name: `rl_iteration_seconds_${label}`, value: mid.seconds, unit: "s", detail })
    emit({ name: `rl_iteration_model_gflop_${label}`, value: gflop, unit: "GFLOP" })
    emit({
      name: `rl_iteration_peak_sgemm_gflops_${label}`,
      value: mid.peak,
      unit: "GFLOP/s",
      detail: "higher of the measurements before and after the timing"
    })
    emit({
      name: `rl_iteration_efficiency_${label}`,
      value: mid.efficiency,
      unit: "ratio",
      detail: `model FLOPs ÷ (wall time × peak SGEMM); median of ${reps.map((r) => r.efficiency.toFixed(2)).join(", ")}`
    })
  }
}
