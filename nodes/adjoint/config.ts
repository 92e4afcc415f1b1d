/**
 * The settings of the adjoint-matching pipelines (docs/algorithms.md §10) and the config they resolve
 * to: the RL settings that apply (data, prompts, rollout, optimizer, evaluation, retention; no PPO
 * clip, KL, advantages or EMA) plus the reward multiplier λ, the truncation K and, for the
 * deterministic variant, the adjoint and the running-cost weight.
 */
import { ADJOINT_KINDS, COST_WEIGHTS, TARGET_ADJOINTS } from "../../diffusion/adjoint.ts"
import { type ConfigOf, omitSettings, Setting } from "../../schemas/settings.ts"
import { type NoiseKey, type RlDefaults, rlSettings, type SharedConfig } from "../rl/config.ts"

/** The RL settings an adjoint-matching pipeline keeps. */
const sharedSettings = <K extends NoiseKey>(d: RlDefaults<K>) =>
  omitSettings(rlSettings(d), [
    "clipRange",
    "beta",
    "klForm",
    "timestepFraction",
    "shuffleTimesteps",
    "rescoreOldLogProb",
    "ema",
    "emaInterval"
  ])

export const amSettings = <K extends NoiseKey>(
  d: RlDefaults<K> & { readonly lambda: number; readonly adjointSteps: number }
) => ({
  ...sharedSettings(d),
  lambda: Setting.number(d.lambda, "reward multiplier λ: the target is p_base · exp(λ r)", { min: 0 }),
  targetAdjoint: Setting.literal(
    TARGET_ADJOINTS,
    "next",
    "adjoint the loss of step k regresses onto: next = a_{k+1}, the discrete problem's optimum (default); " +
      "state = a_k at x_k, am_trainer.py's index"
  ),
  lossClipOrder: Setting.literal(
    ["previous", "reference"],
    "previous",
    "what masks a batch: previous = the EMA of the batches before it (default; the reference's order costs a " +
      "forward of every batch, +8 % of an MNIST iteration); reference = the EMA with the batch's own quantile " +
      "folded in first, as am_trainer.py"
  ),
  lossClip: Setting.boolean(
    true,
    "drop rows whose √loss reaches the EMA (0.9) of the 90th percentile of √loss (am_trainer.py's clipping)"
  ),
  adjointSteps: Setting.int(
    d.adjointSteps,
    "truncation K: adjoint and loss over the last K steps only (0: all steps)",
    { min: 0 }
  ),
  gradClip: Setting.number(
    0,
    "clip the gradient to this total norm; 0: no clipping (soc-fine-tuning-sd multi_prompt.yaml gradient_clip: 0.0)",
    { min: 0 }
  ),
  warmupSteps: Setting.int(
    20,
    "learning rate raised linearly from 0 over this many optimizer steps (soc_trainer.py linear_warmup; 20 there)",
    { min: 0 }
  ),
  weightDecay: Setting.number(0, "AdamW weight decay (soc_trainer.py configure_optimizers: 0.0)", { min: 0 }),
  promptDropout: Setting.number(
    0.2,
    "probability that an optimizer batch trains the unconditional branch against the same adjoints, so CFG " +
      "stays trained (multi_prompt.yaml prompt_dropout; conditional bases only)",
    { min: 0, max: 1 }
  ),
  memoryless: Setting.boolean(
    true,
    "refuse samplers that are not memoryless (flow-grpo at noise √2, ddim or gddim at 1): only with one is " +
      "p_base·exp(λr) the fixed point; false lets a study train with others"
  )
})

/**
 * The adjoint-matching pipelines' defaults: the memoryless Flow-GRPO SDE (noise √2), 10 steps, 128
 * prompts × 1 trajectory, one AdamW step of all 128 at lr 3e-4 (the SD code's step averages 5 × 25 = 125
 * trajectories; deterministic-am keeps two steps of 64), λ = 10 (docs/algorithms.md §10).
 * The policy-gradient fields (clip, β, timestep fraction) have no setting here.
 */
export const AM_DEFAULTS = {
  sampler: "flow-grpo",
  noise: Math.SQRT2,
  noiseKey: "noiseLevel",
  steps: 10,
  clipRange: 0,
  beta: 0,
  lr: 3e-4,
  groupSize: 1,
  promptsPerIteration: 128,
  batchSize: 128,
  timestepFraction: 1,
  shuffleTimesteps: false,
  lambda: 10
} as const

export const deterministicSettings = {
  adjoint: Setting.literal(
    ADJOINT_KINDS,
    "value",
    "target's adjoint: value = gradient of the current policy's cost-to-go (terminal reward + running cost); " +
      "lean = the base model's Jacobian only"
  ),
  costWeight: Setting.literal(
    COST_WEIGHTS,
    "constant",
    "running-cost weight c(t) of ½‖u‖²/c: constant (the KL-like quadratic cost) or late = 2(1 − t), " +
      "cheap control near the data and costly near the noise (beyond KL)"
  )
}

/**
 * The config of an adjoint-matching pipeline: the RL fields it keeps (typed as RlConfig's), the values of
 * `amSettings`' own settings, and deterministic-am's (absent in adjoint-matching's).
 */
export type AmConfig =
  & SharedConfig
  & Omit<ConfigOf<ReturnType<typeof amSettings<NoiseKey>>>, keyof SharedConfig | NoiseKey>
  & Partial<ConfigOf<typeof deterministicSettings>>

/** The first step of the adjoint window: N − K, or 0 when K is 0 or at least N. */
export const windowStart = (c: Pick<AmConfig, "steps" | "adjointSteps">): number =>
  c.adjointSteps === 0 || c.adjointSteps >= c.steps ? 0 : c.steps - c.adjointSteps
