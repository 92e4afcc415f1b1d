/**
 * `etaflow run mixgrpo`: MixGRPO (arXiv 2507.21802, ALGORITHMS.md §5.2) — SDE sampling and
 * optimisation only inside a sliding window of `windowSize` steps, the ODE outside. The window
 * moves by one step every `windowShiftEvery` iterations and wraps around before it would run off
 * the grid, so it is never empty (the reference leaves it empty for τ iterations at the end).
 */
import { Pipeline } from "./kernel/pipeline.ts"
import { Setting } from "../schemas/settings.ts"
import { groupAdvantages } from "../nodes/advantages.ts"
import { rlNodes, rlSettings, rlState, type RlConfig } from "./rl-common.ts"

/** The window [l, l + w) of an iteration: l advances every τ iterations over 0 … N − w. */
export const mixWindow = (steps: number, size: number, every: number, iteration: number): readonly [number, number] => {
  const w = Math.min(size, steps)
  const l = Math.floor(iteration / every) % (steps - w + 1)
  return [l, l + w]
}

export const mixgrpo = Pipeline.define({
  name: "mixgrpo",
  doc: "MixGRPO: Flow-GRPO SDE inside a sliding window of steps, ODE outside, group advantages",
  settings: {
    ...rlSettings({ sampler: "flow-grpo", noise: 0.7, noiseKey: "noiseLevel", steps: 10, clipRange: 1e-3, beta: 0, lr: 3e-5, groupSize: 8 }),
    windowSize: Setting.int(4, "stochastic steps per iteration (the window)", { min: 1 }),
    windowShiftEvery: Setting.int(2, "iterations before the window moves one step", { min: 1 })
  },
  nodes: rlNodes({
    process: "rf",
    sharedNoise: false,
    window: (c, i) => {
      const m = c as RlConfig & { windowSize: number; windowShiftEvery: number }
      return mixWindow(m.steps, m.windowSize, m.windowShiftEvery, i)
    }
  }, groupAdvantages({ std: "unbiased", globalStd: false, eps: 1e-8 })),
  iterations: (c) => c.iterations,
  state: rlState,
  info: (c) => ({ algorithm: "mixgrpo", sampler: c.sampler, window: c.windowSize, time_convention: "rectified flow, t = σ ∈ [0, 1], σ = 1 noise" })
})
