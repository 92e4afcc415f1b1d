/**
 * `etaflow run dance-grpo`: DanceGRPO (arXiv 2505.07818, docs/algorithms.md §5.1) — the DanceGRPO
 * SDE (constant diffusion η), every member of a group starting from the same noise, group advantages
 * with the unbiased std + 1e-8, PPO-clip without KL on a random 60 % of each trajectory's steps.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { groupAdvantages } from "../nodes/rl/advantages.ts"
import { grpoSettings, guardSettings, rlSettings, type RlVariant } from "../nodes/rl/config.ts"
import { rlNodes, rlPipeline } from "./rl-pipeline.ts"

const variant: RlVariant = { process: "rf", sharedNoise: true }

export const danceGrpo = Pipeline.define({
  ...rlPipeline({ name: "dance-grpo", algorithm: "dance-grpo", variant }),
  doc: "DanceGRPO: Dance SDE, shared group noise, unbiased-std group advantages, PPO-clip",
  settings: {
    ...rlSettings({
      sampler: "dance-grpo",
      noise: 0.3,
      noiseKey: "noiseLevel",
      steps: 10,
      clipRange: 1e-4,
      beta: 0,
      lr: 3e-5,
      groupSize: 8,
      timestepFraction: 0.6,
      shuffleTimesteps: true
    }),
    ...grpoSettings(false),
    ...guardSettings
  },
  nodes: rlNodes(variant, groupAdvantages({ std: "unbiased", eps: 1e-8 }))
})
