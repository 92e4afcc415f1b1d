/**
 * `etaflow run awm`: Advantage Weighted Matching (Xue et al., arXiv 2509.25050; Flow-Factory
 * `trainers/awm.py`; docs/algorithms.md §14.2) — the flow-matching loss on the policy's own samples, its
 * negative as a log-likelihood in a PPO-clip ratio against the rollout's weights, weighted by per-prompt
 * advantages; any sampler for the rollouts (ODE default).
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { awmSettings, forwardDefaults, forwardSettings } from "../nodes/rl/forward-config.ts"
import { forwardNodes, forwardPipeline } from "./forward-pipeline.ts"

export const awm = Pipeline.define({
  ...forwardPipeline({ name: "awm", kind: "awm" }),
  doc: "AWM: advantage-weighted flow matching with PPO-clip on re-noised samples, any sampler (ODE default)",
  settings: {
    ...forwardSettings(forwardDefaults(0)),
    ...awmSettings
  },
  nodes: forwardNodes("awm")
})
