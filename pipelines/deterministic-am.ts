/**
 * `etaflow run deterministic-am`: deterministic adjoint matching with a truncated adjoint (seed 002,
 * Guo et al., arXiv 2605.06583; only its abstract is public, so the construction is this project's,
 * docs/algorithms.md §10): ODE rollouts of dx/dt = v_base + u_θ, the value adjoint of the current
 * policy (terminal reward + running cost ½‖u‖²/c(t)) over the last K steps (`adjointSteps`, default 3,
 * the abstract's "AM-3"), and the regression of u_θ onto −c·a_{k+1} on those steps.
 * The `sampler` setting is the SDE of the evaluation's reward gap; training rollouts are the ODE.
 */
import { SAMPLER_NAMES } from "../diffusion/samplers.ts"
import { Pipeline } from "../kernel/pipeline.ts"
import { AM_DEFAULTS, amSettings, deterministicSettings } from "../nodes/adjoint/config.ts"
import { Setting } from "../schemas/settings.ts"
import { amNodes, amPipeline, type AmVariant } from "./am-pipeline.ts"

const variant: AmVariant = { deterministic: true, kind: (c) => c.adjoint ?? "value" }

export const deterministicAm = Pipeline.define({
  ...amPipeline({ name: "deterministic-am", variant }),
  doc: "Deterministic adjoint matching: ODE rollouts, value adjoint over the last K steps, control regression",
  settings: {
    // Two AdamW steps of 64 per iteration: no reference code to follow here, and with one step of 128 the
    // adjoint experiment measured K = 3 losing 0.016 ± 0.007 of ODE improvement to K = N (with two: none).
    ...amSettings({ ...AM_DEFAULTS, adjointSteps: 3, batchSize: 64 }),
    ...deterministicSettings,
    // Training rolls out the ODE: the sampler setting only names the SDE the evaluation's gap compares.
    sampler: Setting.literal(SAMPLER_NAMES, "flow-grpo", "SDE of the evaluation's reward gap (training uses the ODE)")
  },
  nodes: amNodes(variant)
})
