/**
 * The settings every RL pipeline shares, under the same names, and the config they resolve to.
 * RL nodes read their slice of it directly (`Port.of<Pick<RlConfig, …>>()` wired from `config`);
 * what differs between algorithms and is not a setting (the process, shared group noise, MixGRPO's
 * window, Precise's ratio normalisation) is the pipeline's `RlVariant`, given to node factories.
 */
import { GRID_SPACINGS, type GridSpacing } from "../../diffusion/grids.ts"
import type { LogProbConvention } from "../../diffusion/samplers.ts"
import { SAMPLER_NAMES, type SamplerName } from "../../diffusion/samplers.ts"
import { rewardTerms } from "../../rewards/rewards.ts"
import { targetDigits } from "../../rewards/target.ts"
import { messageOf } from "../../schemas/message.ts"
import { KEEP } from "../../schemas/retention.ts"
import { type ConfigOf, Setting } from "../../schemas/settings.ts"
import { KL_FORMS } from "../../training/update-request.ts"
import { DATASETS } from "../setup/dataset.ts"
import { modelSettings } from "../setup/policy-model.ts"

/** An algorithm's defaults for the shared settings. */
/** The setting that holds the training sampler's noise level: η (VP pipelines) or the flow SDE's level. */
export type NoiseKey = "eta" | "noiseLevel"

/** MNIST tasks: the prompted digit from the conditional base, or the unconditional base tilted toward T (§13). */
export const TASKS = ["prompted", "tilt"] as const
export type Task = (typeof TASKS)[number]

export interface RlDefaults<K extends NoiseKey = NoiseKey> {
  readonly sampler: SamplerName
  readonly noise: number
  readonly noiseKey: K
  readonly steps: number
  readonly clipRange: number
  readonly beta: number
  readonly lr: number
  readonly groupSize: number
  readonly timestepFraction: number
  readonly shuffleTimesteps: boolean
  readonly promptsPerIteration?: number
  readonly batchSize?: number
  readonly iterations?: number
}

/** What the rollouts sample: the data set and its base, the sampler and its grid, prompts, task and reward. */
const samplingSettings = <K extends NoiseKey>(d: RlDefaults<K>) => ({
  dataset: Setting.literal(DATASETS, "mnist", "data set of the base model and rewards"),
  points: Setting.int(10_000, "points of a 2-D toy data set", { min: 1 }),
  ...modelSettings,
  iterations: Setting.int(d.iterations ?? 20, "RL iterations", { min: 1 }),
  sampler: Setting.literal(SAMPLER_NAMES, d.sampler, "training sampler"),
  // Typed by the pipeline's key, so `eta` or `noiseLevel` is a setting name the compiler knows.
  ...({
    [d.noiseKey]: Setting.number(
      d.noise,
      d.noiseKey === "eta" ? "DDIM η / gDDIM λ of the training sampler" : "noise level of the flow SDE sampler",
      { min: 0 }
    )
  } as Record<K, Setting<number>>),
  steps: Setting.int(d.steps, "sampling steps of the training rollouts", { min: 1 }),
  shift: Setting.number(1, "static shift S of the flow time grid (1 = uniform)", { min: 0.01 }),
  prompts: Setting.string(
    "default",
    "prompt set: default (MNIST digits / unconditional), a .txt file or a .parquet file"
  ),
  promptsPerIteration: Setting.int(d.promptsPerIteration ?? 32, "prompts drawn per iteration", { min: 1 }),
  groupSize: Setting.int(d.groupSize, "trajectories per prompt (group)", { min: 1 }),
  task: Setting.literal(
    TASKS,
    "prompted",
    "MNIST task: prompted (the prompted digit, conditional base) or tilt (the unconditional base toward `target`)"
  ),
  target: Setting.string("7", "tilt: the target digits T (7, 0,3, even, odd); the reward is log p(T | x)"),
  reward: Setting.string(
    "default",
    "reward spec name[:weight],… (default: classifier for MNIST, target for tilt, outer-ring for toys)"
  )
})

/** How the update trains: AdamW, minibatches, the policy-gradient loss, guidance, the EMA. */
const updateSettings = <K extends NoiseKey>(d: RlDefaults<K>) => ({
  lr: Setting.number(d.lr, "AdamW learning rate", { min: 0 }),
  weightDecay: Setting.number(
    1e-4,
    "AdamW weight decay (ddpo-pytorch, flow_grpo and sdpo configs: adam_weight_decay 1e-4)",
    { min: 0 }
  ),
  innerEpochs: Setting.int(1, "passes over each iteration's transitions", { min: 1 }),
  batchSize: Setting.int(d.batchSize ?? 128, "trajectories (SDPO: pairs) per optimizer step", { min: 1 }),
  clipRange: Setting.number(d.clipRange, "PPO clip range ε of the ratio", { min: 0 }),
  beta: Setting.number(d.beta, "KL coefficient to the base model (0: off)", { min: 0 }),
  klForm: Setting.literal(
    KL_FORMS,
    "code",
    "KL form: code = flow_grpo's train_sd3.py, Δt × the paper's; paper = 2505.05470 eq. 9"
  ),
  timestepFraction: Setting.number(
    d.timestepFraction,
    "fraction of the steps each trajectory trains (flow_grpo 0.99: all but the last)",
    { min: 0, max: 1 }
  ),
  shuffleTimesteps: Setting.boolean(
    d.shuffleTimesteps,
    "train a random subset of steps per trajectory (ddpo, DanceGRPO) instead of the first ones"
  ),
  rescoreOldLogProb: Setting.boolean(
    false,
    "diagnosis: re-score old log-probs with the loss's graph instead of the sampler's stored ones"
  ),
  cfg: Setting.number(1, "classifier-free guidance scale in rollout and training (1 = none)", { min: 0 }),
  ema: Setting.number(0, "EMA decay of the evaluated weights, warm-up min((1+n)/(10+n), ema) (0: off; flow_grpo 0.9)", {
    min: 0,
    max: 1
  }),
  emaInterval: Setting.int(8, "optimizer steps between EMA updates (flow_grpo 8)", { min: 1 })
})

/** How a run is evaluated, watched, stopped and kept. */
const runSettings = {
  evalEvery: Setting.int(5, "evaluate every N iterations (and at the last)", { min: 1 }),
  evalSteps: Setting.intList(
    [1, 2, 4, 8, 16],
    "step counts of the ODE/SDE evaluation (the training step count is added)",
    { min: 1 }
  ),
  evalSamplesPerPrompt: Setting.int(
    16,
    "evaluation samples per held-out prompt (≥ 2: diversity and class-conditional FD compare samples of a prompt)",
    { min: 2 }
  ),
  threads: Setting.int(2, "onnxruntime intra-op threads", { min: 1 }),
  stopWhen: Setting.string(
    "",
    "end the run early, as complete: rules 'METRIC falls K', 'METRIC rises K', 'METRIC < X', 'METRIC > X' " +
      "separated by ';' (e.g. 'eval.fd_target.s10 rises 2; eval.diversity_target.s10 < 0.5'; empty: never)"
  ),
  best: Setting.string(
    "default",
    "metric whose largest value picks the best checkpoint (min:NAME for the smallest): export --iteration best, " +
      "keep=minimal; default with reward=proxy the gold (tilt: min:eval.fd_target.sN, else eval.gold.sN), else " +
      "eval.improvement.sN (N = steps)"
  ),
  keep: Setting.literal(
    KEEP,
    "default",
    "what the run folder keeps: all; default (weights of every iteration, the last iteration's trajectories, " +
      "AdamW moments in the newest checkpoint; replay regenerates the rest); minimal (metrics, evaluation, " +
      "report, best and last weights)"
  )
}

/**
 * Settings every RL pipeline has. By default an iteration samples 32 prompts × the group size and
 * takes two optimizer steps on it (flow_grpo's configs set grad_accum = num_batches_per_epoch / 2 "so
 * that gradients are updated twice per epoch"); batches this size keep matrix products efficient.
 */
export const rlSettings = <K extends NoiseKey>(d: RlDefaults<K>) => ({
  ...samplingSettings(d),
  ...updateSettings(d),
  ...runSettings
})

/** The group normalizer's std: the group's, or the whole batch's (flow_grpo's SD3 configs: global_std true). */
export const grpoSettings = (globalStd: boolean) => ({
  globalStd: Setting.boolean(
    globalStd,
    "normalize group advantages by the std of the whole batch instead of the group's"
  )
})

/**
 * GRPO-Guard (arXiv 2510.22319), a setting of the PPO-clip pipelines: the ratio normalisation and the
 * per-step gradient reweighting, in the closed form of Precise's `grpo_guard` (§4.5) — the loss Precise's
 * pipeline always uses.
 */
export const guardSettings = {
  guard: Setting.boolean(
    false,
    "GRPO-Guard (2510.22319): log r = (Δlp + mean (μ − μ_old)²/(2s²))·s and each step's term ÷ |∂μ/∂f|"
  )
}

/** DDPO's per-prompt reward tracker (ddpo-pytorch: buffer 16, min count 16; 32/16 in its aesthetic config). */
export const trackerSettings = {
  trackerBuffer: Setting.int(16, "rewards kept per prompt by the advantage tracker", { min: 1 }),
  trackerMinCount: Setting.int(16, "below this many stored rewards, the tracker uses the batch's mean and std", {
    min: 1
  })
}

/**
 * Settings only the VP pipelines (ddpo, sdpo) have: the training grid's timestep spacing, defaulting to
 * each reference's (§1.1): ddpo-pytorch builds DDIM from SD 1.5's config (leading, `steps_offset` 1),
 * SDPO from SD-Turbo's (`timestep_spacing: "trailing"`).
 */
export const vpSettings = (spacing: GridSpacing) => ({
  spacing: Setting.literal(
    GRID_SPACINGS,
    spacing,
    "DDIM timestep spacing of the training grid (ddpo-pytorch: leading; sdpo: trailing); evaluation is always trailing"
  )
})

/**
 * The config fields every RL pipeline has: the values of `rlSettings` (one source: a setting added
 * there is a field here), its noise under whichever key the pipeline uses (read by `noiseOf`), and the
 * VP pipelines' `spacing`.
 */
export type RlConfig =
  & Omit<ConfigOf<ReturnType<typeof rlSettings<NoiseKey>>>, NoiseKey>
  & { readonly eta?: number; readonly noiseLevel?: number }
  & Partial<ConfigOf<ReturnType<typeof vpSettings>>>
  & Partial<ConfigOf<typeof guardSettings>>

/** The fields of every RL config except the policy-gradient ones (what adjoint matching shares). */
export type SharedConfig = Omit<
  RlConfig,
  | "clipRange"
  | "beta"
  | "klForm"
  | "timestepFraction"
  | "shuffleTimesteps"
  | "rescoreOldLogProb"
  | "ema"
  | "emaInterval"
>

/** What an algorithm fixes that is not a setting (C: its config, which MixGRPO's window reads). */
export interface RlVariant<C extends RlConfig = RlConfig> {
  /** The base model's process: rectified flow or VP (DDPO, SDPO). */
  readonly process: "rf" | "vp"
  /** Group members start from the same initial noise (DanceGRPO, SDPO pairs). */
  readonly sharedNoise: boolean
  /** MixGRPO's stochastic window [from, to) for an iteration; absent: every step stochastic. */
  readonly window?: (config: C, iteration: number) => readonly [number, number]
  /** Precise's ratio normalisation in the PPO loss (§7.5). */
  readonly rationorm?: boolean
}

/** Whether the PPO loss normalises its ratio: Precise's recipe, or GRPO-Guard switched on (§4.5). */
export const ratioNormOf = (
  variant: Pick<RlVariant, "rationorm">,
  config: { readonly guard?: boolean | undefined }
): boolean => variant.rationorm === true || config.guard === true

/**
 * CPS's log-prob convention in a pipeline: FlowCPS's own `−mean (x' − μ)²` (§6.2), except where the ratio is
 * normalised (Precise's repository scores its `cps` mode with the Gaussian log-prob its normalisation needs).
 */
export const cpsLogProbOf = (rationorm: boolean): LogProbConvention => rationorm ? "gaussian" : "unnormalized"

/** The training sampler's noise level, under whichever key the pipeline uses. */
export const noiseOf = (c: Pick<RlConfig, "eta" | "noiseLevel">): number => c.eta ?? c.noiseLevel ?? 0

/**
 * The reward spec, with `default` resolved: the classifier (tilt: target) for MNIST, gmm25's posterior ratio,
 * the outer ring for the other toys.
 */
export const rewardOf = (c: Pick<RlConfig, "reward" | "dataset" | "task">): string =>
  c.reward !== "default"
    ? c.reward
    : c.dataset === "gmm25"
    ? "gmm-posterior"
    : c.dataset !== "mnist"
    ? "outer-ring"
    : c.task === "tilt"
    ? "target"
    : "classifier"

/** The tilt task's target digits (an invalid `target` is refused by `taskProblems` before a run starts). */
export const targetOf = (c: Pick<RlConfig, "target">): Array<number> => targetDigits(c.target)

/** Why a config's task cannot run: tilt needs MNIST, a valid target and no prompted-digit reward. */
export const taskProblems = (c: Pick<RlConfig, "task" | "target" | "dataset" | "reward">): Array<string> => {
  const terms = rewardTerms(rewardOf(c)).map((t) => t.name)
  // The proxy replaces the pipeline's classifier, so the true classifier's terms cannot run beside it.
  const mixed = terms.includes("proxy") && terms.some((t) => t === "classifier" || t === "target")
    ? [`setting "reward": proxy replaces the reward classifier; it cannot be combined with classifier or target`]
    : []
  if (c.task !== "tilt") return mixed
  const problems: Array<string> = [...mixed]
  if (c.dataset !== "mnist") problems.push(`task tilt tilts the MNIST base; dataset is ${c.dataset}`)
  try {
    targetDigits(c.target)
  } catch (e) {
    problems.push(`setting "target": ${messageOf(e)}`)
  }
  if (terms.includes("classifier")) {
    problems.push(`task tilt has no prompted digit for the classifier reward; use reward=target (log p(T | x))`)
  }
  return problems
}
