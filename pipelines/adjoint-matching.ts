/**
 * `etaflow run adjoint-matching`: Adjoint Matching (Domingo-Enrich et al., arXiv 2409.08861;
 * microsoft/soc-fine-tuning-sd am_trainer.py; docs/algorithms.md §10) on the rectified-flow base —
 * memoryless rollouts of the fine-tuned model (the Flow-GRPO SDE at noise level √2: σ_t² = 2σ/(1 − σ),
 * the memoryless schedule in flow time σ = 1 − t), the lean adjoint of the frozen base from
 * a_N = −λ∇r(x_N), and the regression ‖(μ_ft − μ_base)/s + a_k s‖² on 2 + 2 time indices per
 * trajectory with quantile loss clipping. `adjointSteps=K` truncates adjoint and loss to the last K steps.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { AM_DEFAULTS, amSettings } from "../nodes/adjoint/config.ts"
import { amNodes, amPipeline, type AmVariant } from "./am-pipeline.ts"

const variant: AmVariant = { deterministic: false, kind: () => "lean" }

export const adjointMatching = Pipeline.define({
  ...amPipeline({ name: "adjoint-matching", variant }),
  doc: "Adjoint Matching: memoryless SDE rollouts, lean adjoint of the base, regression onto the adjoint's target",
  settings: amSettings({ ...AM_DEFAULTS, adjointSteps: 0 }),
  nodes: amNodes(variant)
})
