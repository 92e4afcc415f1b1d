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
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { releaseCachedSessions } from "../engine/session-cache.ts"
import type { AnyPipeline } from "../kernel/pipeline.ts"
import { runPipeline } from "../kernel/run.ts"
import { type ImportedPolicy, loadPolicyContract } from "../models/model-contract.ts"
import { rlBaseNet } from "../nodes/setup/base-model.ts"
import { adjointMatching } from "../pipelines/adjoint-matching.ts"
import { flowGrpo } from "../pipelines/flow-grpo.ts"
import { PretrainSettings } from "../pipelines/pretrain.ts"
import { quickstart } from "../pipelines/quickstart.ts"
import { RewardModelSettings } from "../pipelines/reward-model.ts"
import { median, peakSgemm } from "./engine.ts"
import type { BenchLine } from "./line.ts"
import { forwardFlops } from "./model-flops.ts"

const run = async (pipeline: AnyPipeline, iterations: number, set: Readonly<Record<string, string>> = {}) => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-bench-rl-")), "run")
  const t0 = performance.now()
  await Effect.runPromise(
    runPipeline(pipeline, {
      out,
      progress: "none",
      set: { ...set, iterations: String(iterations), evalEvery: "1000" }
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

const gflopOf = (pipeline: AnyPipeline, rewardCalls: number, rowFlops = flopsPerRow()) => {
  const c = defaults(pipeline)
  const trajectories = c.promptsPerIteration * c.groupSize
  const rollout = trajectories * c.steps
  // Every step of the default samplers is stochastic, so the fraction alone decides the trained rows.
  const trained = trajectories * Math.max(1, Math.floor(c.steps * c.timestepFraction + 1e-9))
  const forwards = rollout + (c.beta > 0 ? trained : 0) + 3 * trained
  return {
    gflop: (forwards * rowFlops + rewardCalls * trajectories * classifierFlops()) / 1e9,
    detail: `${trajectories} trajectories × ${c.steps} steps, ${trained / trajectories} trained, ` +
      `${(rowFlops / 1e6).toFixed(1)} MFLOP a forward`
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

interface Measured {
  readonly label: string
  readonly pipeline: AnyPipeline
  readonly work: () => { readonly gflop: number; readonly detail: string }
  readonly set?: Readonly<Record<string, string>>
  /** The slope's iteration counts and its repetitions (fewer for the conv and transformer bases' slow iterations). */
  readonly slope?: readonly [number, number, number]
}

const TINY_UNET = "test/fixtures/models/tiny-unet.onnx"
const archRow = (arch: "unet" | "dit") => forwardFlops(rlBaseNet("mnist", arch))

const MEASURED: ReadonlyArray<Measured> = [
  { label: "quickstart_sdpo_mnist", pipeline: quickstart, work: () => gflopOf(quickstart, 3) },
  { label: "flow_grpo_mnist", pipeline: flowGrpo, work: () => gflopOf(flowGrpo, 1) },
  { label: "adjoint_matching_mnist", pipeline: adjointMatching, work: () => adjointGflopOf(adjointMatching) },
  ...(["unet", "dit"] as const).map((arch) => ({
    label: `flow_grpo_mnist_${arch}`,
    pipeline: flowGrpo,
    work: () => gflopOf(flowGrpo, 1, archRow(arch)),
    set: { arch },
    slope: [1, 4, 3] as const
  })),
  {
    label: "flow_grpo_tiny_unet",
    pipeline: flowGrpo,
    work: () => gflopOf(flowGrpo, 1, forwardFlops((loadPolicyContract(TINY_UNET) as ImportedPolicy).net)),
    set: { task: "tilt", base: TINY_UNET },
    slope: [1, 4, 3]
  }
]

/**
 * This machine's speed drifts by up to ±25 % within minutes, so each timing (the slope between a
 * 2- and a 10-iteration run) is paired with peak SGEMM measured just before and after it, the higher
 * of the two taken (never flattering); the efficiency reported is the median of five such pairs.
 */
export const rlBench = async (emit: (line: BenchLine) => void, labels: ReadonlyArray<string> = []): Promise<void> => {
  for (const { label, pipeline, work, set = {}, slope = [2, 10, 5] } of MEASURED) {
    if (labels.length > 0 && !labels.some((l) => label.includes(l))) continue
    // The previous network's sessions go (an OOM kill at 24 GB ran the conv networks one after another).
    await releaseCachedSessions()
    const { gflop, detail } = work()
    await run(pipeline, 1, set) // warm the model cache and the JIT
    const reps: Array<{ seconds: number; peak: number; efficiency: number }> = []
    const [few, many, repetitions] = slope
    for (let r = 0; r < repetitions; r++) {
      const before = await peakSgemm()
      const tFew = await run(pipeline, few, set)
      const tMany = await run(pipeline, many, set)
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

/**
 * The PyTorch peer (bench/peer/flow_grpo_torch.py: the same network, batch, steps and KL reference in
 * eager PyTorch) timed in the same run as etaflow's `flow_grpo_tiny_unet`, and the ratio; skipped, with a
 * line saying so, where Debian's python3-torch is absent.
 */
export const peerBench = async (emit: (line: BenchLine) => void): Promise<void> => {
  await releaseCachedSessions()
  const python = "/usr/bin/python3"
  if (spawnSync(python, ["-c", "import torch"], { encoding: "utf8" }).status !== 0) {
    emit({ name: "rl_iteration_seconds_pytorch_tiny_unet", value: Number.NaN, unit: "s", detail: "skipped: no torch" })
    return
  }
  const peer = spawnSync(python, ["bench/peer/flow_grpo_torch.py", "--threads", "2"], { encoding: "utf8" })
  if (peer.status !== 0) throw new Error(`the PyTorch peer failed: ${peer.stderr}`)
  const torch = JSON.parse(peer.stdout.trim().split("\n").at(-1)!) as { seconds: number; torch: string }
  emit({
    name: "rl_iteration_seconds_pytorch_tiny_unet",
    value: torch.seconds,
    unit: "s",
    detail: `torch ${torch.torch} eager, 2 threads, median of 3 iterations after a warm-up`
  })
  // etaflow's time for the same iteration, measured right after the peer (the machine drifts).
  const set = { task: "tilt", base: TINY_UNET }
  const etaflow = ((await run(flowGrpo, 3, set)) - (await run(flowGrpo, 1, set))) / 2
  emit({
    name: "rl_iteration_etaflow_over_pytorch_tiny_unet",
    value: etaflow / torch.seconds,
    unit: "ratio",
    detail: `etaflow ${etaflow.toFixed(2)} s ÷ PyTorch ${torch.seconds.toFixed(2)} s per Flow-GRPO iteration`
  })
}
