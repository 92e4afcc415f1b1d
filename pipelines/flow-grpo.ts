/**
 * `etaflow run flow-grpo`: Flow-GRPO (arXiv 2505.05470, docs/algorithms.md §4) — the Flow-GRPO SDE with
 * noise level a, group-normalized rewards (population std + 1e-4), PPO-clip with KL to the base
 * model, ODE evaluation of the reward gap.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { groupAdvantages } from "../nodes/advantages.ts"
import { grpoSettings, rlNodes, rlSettings, rlState } from "./rl-common.ts"

export const flowGrpo = Pipeline.define({
  name: "flow-grpo",
  doc: "Flow-GRPO: Flow-GRPO SDE, group advantages, PPO-clip + KL, ODE evaluation",
  settings: {
    ...rlSettings({ sampler: "flow-grpo", noise: 0.7, noiseKey: "noiseLevel", steps: 10, clipRange: 1e-4, beta: 0.01, lr: 3e-5, groupSize: 8, timestepFraction: 0.99, shuffleTimesteps: false }),
    ...grpoSettings(true)
  },
  nodes: rlNodes({ process: "rf", sharedNoise: false, window: () => null }, groupAdvantages({ std: "population", eps: 1e-4 })),
  iterations: (c) => c.iterations,
  state: rlState,
  info: (c) => ({ algorithm: "flow-grpo", sampler: c.sampler, time_convention: "rectified flow, t = σ ∈ [0, 1], σ = 1 noise" })
})
