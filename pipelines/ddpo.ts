/**
 * `etaflow run ddpo`: DDPO (arXiv 2305.13301, docs/algorithms.md §8) on a VP ε-model — DDIM-η (or
 * gDDIM-λ: `--set sampler=gddim --set eta=1.2`, the η sweep of Sheng et al.) on the leading grid, a
 * per-prompt reward tracker (buffer 16, min count 16) that persists across iterations, PPO-clip with
 * clip range 1e-4 on a fresh permutation of each trajectory's steps.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { promptTrackerAdvantages } from "../nodes/rl/advantages.ts"
import { guardSettings, rlSettings, type RlVariant, trackerSettings, vpSettings } from "../nodes/rl/config.ts"
import { rlNodes, rlPipeline } from "./rl-pipeline.ts"

const variant: RlVariant = { process: "vp", sharedNoise: false }

export const ddpo = Pipeline.define({
  ...rlPipeline({ name: "ddpo", algorithm: "ddpo", variant }),
  doc: "DDPO: DDIM-η / gDDIM-λ on a VP ε-model, per-prompt reward tracker, PPO-clip",
  settings: {
    ...rlSettings({
      sampler: "ddim",
      noise: 1,
      noiseKey: "eta",
      steps: 10,
      clipRange: 1e-4,
      beta: 0,
      lr: 3e-5,
      groupSize: 8,
      timestepFraction: 1,
      shuffleTimesteps: true
    }),
    ...vpSettings("leading"),
    ...trackerSettings,
    ...guardSettings
  },
  nodes: rlNodes(variant, promptTrackerAdvantages)
})
