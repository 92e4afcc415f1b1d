/**
 * `etaflow run flow-grpo`: Flow-GRPO (arXiv 2505.05470, docs/algorithms.md §4) — the Flow-GRPO SDE
 * with noise level a, group-normalized rewards (population std + 1e-4; the batch's std by default,
 * as the SD3 configs' global_std), PPO-clip with KL to the base model (flow_grpo's code form, β
 * 0.01), all but the last transition trained, ODE evaluation of the reward gap.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { groupAdvantages } from "../nodes/rl/advantages.ts"
import { grpoSettings, guardSettings, rlSettings, type RlVariant } from "../nodes/rl/config.ts"
import { rlNodes, rlPipeline } from "./rl-pipeline.ts"

const variant: RlVariant = { process: "rf", sharedNoise: false }

export const flowGrpo = Pipeline.define({
  ...rlPipeline({ name: "flow-grpo", algorithm: "flow-grpo", variant }),
  doc: "Flow-GRPO: Flow-GRPO SDE, group advantages, PPO-clip + KL, ODE evaluation",
  settings: {
    ...rlSettings({
      sampler: "flow-grpo",
      noise: 0.7,
      noiseKey: "noiseLevel",
      steps: 10,
      clipRange: 1e-4,
      beta: 0.01,
      lr: 3e-5,
      groupSize: 8,
      timestepFraction: 0.99,
      shuffleTimesteps: false
    }),
    ...grpoSettings(true),
    ...guardSettings
  },
  nodes: rlNodes(variant, groupAdvantages({ std: "population", eps: 1e-4 }))
})
