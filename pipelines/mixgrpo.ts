/**
 * `etaflow run mixgrpo`: MixGRPO (arXiv 2507.21802, docs/algorithms.md §5.2) — SDE sampling and
 * optimisation only inside a sliding window of `windowSize` steps, the ODE outside. As in the
 * reference (fastvideo/utils/grpo_states.py, "progressive", roll_back on), the window starts at l,
 * moves one step every `windowShiftEvery` iterations and never reaches past L = N − 2 (the last two
 * transitions are never stochastic); it shrinks to [l, L) near the end. Departure: the reference
 * lets l reach L, an empty window (no gradient) for τ iterations before rolling back; here l rolls
 * back to 0 as soon as it would reach L, so every iteration trains.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { groupAdvantages } from "../nodes/rl/advantages.ts"
import { grpoSettings, guardSettings, type RlConfig, rlSettings, type RlVariant } from "../nodes/rl/config.ts"
import { Setting } from "../schemas/settings.ts"
import { rlNodes, rlPipeline } from "./rl-pipeline.ts"

/** The window [l, min(l + w, L)) of an iteration, L = max(1, N − 2); l advances every τ iterations over 0 … L − 1. */
export const mixWindow = (steps: number, size: number, every: number, iteration: number): readonly [number, number] => {
  const last = Math.max(1, steps - 2)
  const l = Math.floor(iteration / every) % last
  return [l, Math.min(l + size, last)]
}

type MixConfig = RlConfig & { readonly windowSize: number; readonly windowShiftEvery: number }

const variant: RlVariant<MixConfig> = {
  process: "rf",
  sharedNoise: false,
  window: (c, i) => mixWindow(c.steps, c.windowSize, c.windowShiftEvery, i)
}

export const mixgrpo = Pipeline.define({
  ...rlPipeline<MixConfig>({ name: "mixgrpo", algorithm: "mixgrpo", variant, info: (c) => ({ window: c.windowSize }) }),
  doc: "MixGRPO: Flow-GRPO SDE inside a sliding window of steps, ODE outside, group advantages",
  settings: {
    ...rlSettings({
      sampler: "flow-grpo",
      noise: 0.7,
      noiseKey: "noiseLevel",
      steps: 10,
      clipRange: 1e-4,
      beta: 0,
      lr: 3e-5,
      groupSize: 8,
      timestepFraction: 1,
      shuffleTimesteps: false
    }),
    ...grpoSettings(false),
    ...guardSettings,
    windowSize: Setting.int(4, "stochastic steps per iteration (the window)", { min: 1 }),
    windowShiftEvery: Setting.int(2, "iterations before the window moves one step", { min: 1 })
  },
  nodes: rlNodes(variant, groupAdvantages({ std: "unbiased", eps: 1e-8 }))
})
