/**
 * `etaflow run precise`: the Precise sampler (docs/algorithms.md §7: exact λ-SDE step with a
 * logSNR-derived schedule, η = √2·λ) with group advantages (population std + 1e-4) and PPO-clip
 * with Precise's ratio normalisation (§7.5).
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { groupAdvantages } from "../nodes/advantages.ts"
import { grpoSettings, rlNodes, rlSettings, rlState } from "./rl-common.ts"

export const precisePipeline = Pipeline.define({
  name: "precise",
  doc: "Precise sampler (marginal-preserving λ-SDE), group advantages, PPO-clip with ratio normalisation",
  settings: {
    ...rlSettings({ sampler: "precise", noise: 1.5, noiseKey: "noiseLevel", steps: 10, clipRange: 4e-6, beta: 0, lr: 3e-5, groupSize: 8, timestepFraction: 0.99, shuffleTimesteps: false }),
    ...grpoSettings(false)
  },
  nodes: rlNodes({ process: "rf", sharedNoise: false, window: () => null, rationorm: true }, groupAdvantages({ std: "population", eps: 1e-4 })),
  iterations: (c) => c.iterations,
  state: rlState,
  info: (c) => ({ algorithm: "precise", sampler: c.sampler, time_convention: "rectified flow, t = σ ∈ [0, 1], σ = 1 noise" })
})
