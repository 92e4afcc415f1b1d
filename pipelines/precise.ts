/**
 * `etaflow run precise`: the Precise sampler (docs/algorithms.md §7: exact λ-SDE step with a
 * logSNR-derived schedule, η = √2·λ) with group advantages (population std + 1e-4), PPO-clip with
 * clip range 4e-6 and Precise's per-step ratio normalisation (§7.5), all but the last step trained.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { groupAdvantages } from "../nodes/rl/advantages.ts"
import { grpoSettings, rlSettings, type RlVariant } from "../nodes/rl/config.ts"
import { rlNodes, rlPipeline } from "./rl-pipeline.ts"

const variant: RlVariant = { process: "rf", sharedNoise: false, rationorm: true }

export const precisePipeline = Pipeline.define({
  ...rlPipeline({ name: "precise", algorithm: "precise", variant }),
  doc: "Precise sampler (marginal-preserving λ-SDE), group advantages, PPO-clip with ratio normalisation",
  settings: {
    ...rlSettings({
      sampler: "precise",
      noise: 1.5,
      noiseKey: "noiseLevel",
      steps: 10,
      clipRange: 4e-6,
      beta: 0,
      lr: 3e-5,
      groupSize: 8,
      timestepFraction: 0.99,
      shuffleTimesteps: false
    }),
    ...grpoSettings(false)
  },
  nodes: rlNodes(variant, groupAdvantages({ std: "population", eps: 1e-4 }))
})
