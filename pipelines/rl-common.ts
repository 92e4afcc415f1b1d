/**
 * What the RL pipelines share: their common settings (same names in every pipeline), the adapter
 * nodes that hand each stage its slice of the config, and the iteration DAG
 *   prompts → rollout → rewards → advantages → update → evaluation,
 * with the data set, reward classifier and base model computed once. Each algorithm's file picks
 * its sampler, advantage normalizer and defaults.
 */
import { Effect } from "effect"
import { Node, Persist, Port } from "../kernel/node.ts"
import { Setting, type ConfigOf, type Setting as SettingT } from "../schemas/settings.ts"
import { DATASETS, dataset } from "../nodes/dataset.ts"
import { datasetRequest } from "../nodes/dataset-request.ts"
import { rewardClassifier, type RewardModelRequest } from "../nodes/reward-classifier.ts"
import { baseModel, type PretrainRequest } from "../nodes/base-model.ts"
import { promptBatch } from "../nodes/prompts.ts"
import { rolloutTrajectories, type RolloutRequest } from "../nodes/rollout.ts"
import { terminalRewards } from "../nodes/score.ts"
import { KL_FORMS, policyUpdate, type KlForm, type UpdateRequest, type UpdateResult } from "../nodes/update.ts"
import { evaluation, evalTable, type EvalRequest } from "../nodes/evaluate.ts"
import { rlTrajectoryTable } from "../nodes/trajectories.ts"
import { decodeRlState, encodeRlState, type RlState } from "../nodes/rl-state.ts"
import type { Advantages } from "../nodes/advantages.ts"
import { restoreAdvantages, restoreRewards, restoreTrajectories, restoreUpdate } from "../nodes/restore.ts"
import type { Rewards } from "../nodes/score.ts"
import type { Trajectories } from "../nodes/rollout.ts"
import { SAMPLER_NAMES, samplerLogProb, type SamplerName } from "../diffusion/samplers.ts"
import { GRID_SPACINGS, type GridSpacing } from "../diffusion/grids.ts"
import { PretrainSettings } from "./pretrain.ts"
import { RewardModelSettings } from "./reward-model.ts"

const defaults = <S extends Record<string, SettingT<any>>>(s: S) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.default])) as ConfigOf<S>

/**
 * Settings every RL pipeline has, under the same names; `d` overrides per algorithm. By default an
 * iteration samples 32 prompts × the group size and takes two optimizer steps on it (flow_grpo's
 * configs set grad_accum = num_batches_per_epoch / 2 "so that gradients are updated twice per
 * epoch"); batches this size also keep the network's matrix products efficient (bench/README.md).
 */
export interface RlDefaults {
  readonly sampler: SamplerName
  readonly noise: number
  readonly noiseKey: "eta" | "noiseLevel"
  readonly steps: number
  readonly clipRange: number
  readonly beta: number
  readonly lr: number
  readonly groupSize: number
  readonly timestepFraction: number
  readonly shuffleTimesteps: boolean
  readonly promptsPerIteration?: number
  readonly batchSize?: number
  readonly reward?: string
  readonly iterations?: number
}

export const rlSettings = (d: RlDefaults) => ({
  dataset: Setting.literal(DATASETS, "mnist", "data set of the base model and rewards"),
  points: Setting.int(10_000, "points of a 2-D toy data set", { min: 1 }),
  iterations: Setting.int(d.iterations ?? 20, "RL iterations", { min: 1 }),
  sampler: Setting.literal(SAMPLER_NAMES, d.sampler, "training sampler"),
  [d.noiseKey]: Setting.number(d.noise, d.noiseKey === "eta" ? "DDIM η / gDDIM λ of the training sampler" : "noise level of the flow SDE sampler", { min: 0 }),
  steps: Setting.int(d.steps, "sampling steps of the training rollouts", { min: 1 }),
  shift: Setting.number(1, "static shift S of the flow time grid (1 = uniform)", { min: 0.01 }),
  prompts: Setting.string("default", "prompt set: default (MNIST digits / unconditional), a .txt file or a .parquet file"),
  promptsPerIteration: Setting.int(d.promptsPerIteration ?? 32, "prompts drawn per iteration", { min: 1 }),
  groupSize: Setting.int(d.groupSize, "trajectories per prompt (group)", { min: 1 }),
  reward: Setting.string(d.reward ?? "default", "reward spec name[:weight],… (default: classifier for MNIST, outer-ring for toys)"),
  lr: Setting.number(d.lr, "AdamW learning rate", { min: 0 }),
  innerEpochs: Setting.int(1, "passes over each iteration's transitions", { min: 1 }),
  batchSize: Setting.int(d.batchSize ?? 128, "trajectories (SDPO: pairs) per optimizer step", { min: 1 }),
  clipRange: Setting.number(d.clipRange, "PPO clip range ε of the ratio", { min: 0 }),
  beta: Setting.number(d.beta, "KL coefficient to the base model (0: off)", { min: 0 }),
  klForm: Setting.literal(KL_FORMS, "code", "KL form: code = flow_grpo's train_sd3.py, Δt × the paper's; paper = 2505.05470 eq. 9"),
  timestepFraction: Setting.number(d.timestepFraction, "fraction of the steps each trajectory trains (flow_grpo 0.99: all but the last)", { min: 0, max: 1 }),
  shuffleTimesteps: Setting.boolean(d.shuffleTimesteps, "train a random subset of steps per trajectory (ddpo, DanceGRPO) instead of the first ones"),
  rescoreOldLogProb: Setting.boolean(false, "diagnosis: re-score old log-probs with the loss's graph instead of the sampler's stored ones"),
  cfg: Setting.number(1, "classifier-free guidance scale in rollout and training (1 = none)", { min: 0 }),
  ema: Setting.number(0, "EMA decay of the evaluated weights, warm-up min((1+n)/(10+n), ema) (0: off; flow_grpo 0.9)", { min: 0, max: 1 }),
  emaInterval: Setting.int(8, "optimizer steps between EMA updates (flow_grpo 8)", { min: 1 }),
  evalEvery: Setting.int(5, "evaluate every N iterations (and at the last)", { min: 1 }),
  evalSteps: Setting.intList([1, 2, 4, 8, 16], "step counts of the ODE/SDE evaluation (the training step count is added)", { min: 1 }),
  evalSamplesPerPrompt: Setting.int(16, "evaluation samples per held-out prompt", { min: 1 }),
  threads: Setting.int(2, "onnxruntime intra-op threads", { min: 1 })
})

/** The config fields every RL pipeline has (its noise key is read by `noiseOf`). */
export type RlConfig = {
  readonly dataset: (typeof DATASETS)[number]
  readonly points: number
  readonly iterations: number
  readonly sampler: SamplerName
  readonly steps: number
  readonly shift: number
  readonly prompts: string
  readonly promptsPerIteration: number
  readonly groupSize: number
  readonly reward: string
  readonly lr: number
  readonly innerEpochs: number
  readonly batchSize: number
  readonly clipRange: number
  readonly beta: number
  readonly klForm: KlForm
  readonly timestepFraction: number
  readonly shuffleTimesteps: boolean
  readonly rescoreOldLogProb: boolean
  readonly spacing?: GridSpacing
  readonly cfg: number
  readonly ema: number
  readonly emaInterval: number
  readonly evalEvery: number
  readonly evalSteps: ReadonlyArray<number>
  readonly evalSamplesPerPrompt: number
  readonly threads: number
  readonly eta?: number
  readonly noiseLevel?: number
}

export interface Variant {
  /** The base model's process: rectified flow or VP (DDPO, SDPO). */
  readonly process: "rf" | "vp"
  readonly sharedNoise: boolean
  /** MixGRPO's stochastic window for an iteration, or null (every step stochastic). */
  readonly window: (config: RlConfig, iteration: number) => readonly [number, number] | null
  /** Precise's ratio normalisation in the PPO loss. */
  readonly rationorm?: boolean
}

/**
 * The base model of a 2-D toy: a small network trained briefly (its ODE samples lie within ~0.06
 * of the double ring), instead of the MNIST-sized pretrain defaults; MNIST uses those defaults, so
 * `etaflow run pretrain` and the RL pipelines share one cached base.
 */
const TOY_BASE = { hidden: 128, blocks: 2, steps: 800, lr: 3e-3 }

/** The group normalizer's std: the group's, or the whole batch's (flow_grpo's SD3 configs: global_std true). */
export const grpoSettings = (globalStd: boolean) => ({
  globalStd: Setting.boolean(globalStd, "normalize group advantages by the std of the whole batch instead of the group's")
})

/** DDPO's per-prompt reward tracker (ddpo-pytorch: buffer 16, min count 16; 32/16 in its aesthetic config). */
export const trackerSettings = {
  trackerBuffer: Setting.int(16, "rewards kept per prompt by the advantage tracker", { min: 1 }),
  trackerMinCount: Setting.int(16, "below this many stored rewards, the tracker uses the batch's mean and std", { min: 1 })
}

/** Settings only the VP pipelines (ddpo, sdpo) have: the training grid's timestep spacing. */
export const vpSettings = {
  spacing: Setting.literal(GRID_SPACINGS, "leading", "DDIM timestep spacing of the training grid (leading: ddpo-pytorch and sdpo); evaluation is always trailing")
}

const noiseOf = (c: RlConfig) => c.eta ?? c.noiseLevel ?? 0
const rewardOf = (c: RlConfig) => (c.reward !== "default" ? c.reward : c.dataset === "mnist" ? "classifier" : "outer-ring")

/** The update settings of an RL config; the log-prob convention is the training sampler's (§6.2). */
export const updateRequestOf = (c: RlConfig, rationorm: boolean): UpdateRequest => ({
  lr: c.lr, innerEpochs: c.innerEpochs, clipRange: c.clipRange, beta: c.beta, klForm: c.klForm, cfg: c.cfg,
  batchSize: c.batchSize, threads: c.threads, rationorm, logProb: samplerLogProb(c.sampler),
  timestepFraction: c.timestepFraction, shuffleTimesteps: c.shuffleTimesteps, rescoreOldLogProb: c.rescoreOldLogProb,
  ema: c.ema, emaInterval: c.emaInterval
})

/** A node handing a stage its slice of the config (it may depend on the iteration). */
const adapter = <Out>(name: string, f: (c: RlConfig, iteration: number) => Out) =>
  Node.make({ name, doc: `the ${name.replace("Request", "")} settings of an RL run`, inputs: { config: Port.of<RlConfig>(), iteration: Port.of<number>() }, run: ({ config, iteration }) => Effect.succeed(f(config, iteration)) })
/** The same for stages computed once, which may read the config only. */
const constantAdapter = <Out>(name: string, f: (c: RlConfig) => Out) =>
  Node.make({ name, doc: `the ${name.replace("Request", "")} settings of an RL run`, inputs: { config: Port.of<RlConfig>() }, run: ({ config }) => Effect.succeed(f(config)) })

/** The nodes of an RL pipeline with the given advantage normalizer. */
export const rlNodes = <C, E, R>(
  variant: Variant,
  advantages: Node<{ rewards: Rewards; trajectories: Trajectories; state: RlState | null; config: C }, Advantages, E, R>
) => {
  const rolloutRequest = adapter("rolloutRequest", (c, i): RolloutRequest => ({
    sampler: c.sampler, noise: noiseOf(c), steps: c.steps, shift: c.shift, spacing: c.spacing ?? "leading", cfg: c.cfg,
    sharedNoise: variant.sharedNoise, window: variant.window(c, i), threads: c.threads
  }))
  return {
    request: datasetRequest.from({ config: "config" }).once(),
    data: dataset.from({ request: "request" }).once(),
    classifierConfig: constantAdapter("classifierRequest", (c): RewardModelRequest => ({ ...defaults(RewardModelSettings), dataset: c.dataset, threads: c.threads })).from({ config: "config" }).once(),
    classifier: rewardClassifier.from({ data: "data", config: "classifierConfig" }).once(),
    baseConfig: constantAdapter("baseRequest", (c): PretrainRequest => ({ ...defaults(PretrainSettings), ...(c.dataset === "mnist" ? {} : TOY_BASE), dataset: c.dataset, process: variant.process, threads: c.threads })).from({ config: "config" }).once(),
    base: baseModel.from({ data: "data", config: "baseConfig" }).once(),
    promptBatch: promptBatch.from({ config: "config" }),
    rolloutConfig: rolloutRequest.from({ config: "config", iteration: "iteration" }),
    rollout: rolloutTrajectories.from({ state: "state", base: "base", prompts: "promptBatch", config: "rolloutConfig" }).restoredBy(restoreTrajectories),
    scoreConfig: adapter("scoreRequest", (c) => ({ dataset: c.dataset, reward: rewardOf(c), threads: c.threads })).from({ config: "config", iteration: "iteration" }),
    rewards: terminalRewards.from({ trajectories: "rollout", classifier: "classifier", config: "scoreConfig" }).restoredBy(restoreRewards),
    advantages: advantages.from({ rewards: "rewards", trajectories: "rollout", state: "state", config: "config" }).restoredBy(restoreAdvantages),
    trajectoryTable: rlTrajectoryTable.from({ trajectories: "rollout", rewards: "rewards", advantages: "advantages" }).persist(Persist.perIteration("trajectories")),
    updateConfig: adapter("updateRequest", (c) => updateRequestOf(c, variant.rationorm ?? false)).from({ config: "config", iteration: "iteration" }),
    update: policyUpdate.from({ trajectories: "rollout", advantages: "advantages", state: "state", base: "base", config: "updateConfig" }).restoredBy(restoreUpdate),
    nextState: Node.make({ name: "nextState", doc: "the state the next iteration starts from", inputs: { update: Port.of<UpdateResult>() }, run: ({ update }) => Effect.succeed(update.state as RlState | null) }).from({ update: "update" }),
    evalConfig: adapter("evalRequest", (c, i): EvalRequest => ({
      ...rolloutRequest.run({ config: c, iteration: i }).pipe(Effect.runSync),
      window: null, dataset: c.dataset, reward: rewardOf(c), evalEvery: c.evalEvery,
      evalSteps: [...new Set([...c.evalSteps, c.steps])].sort((a, b) => a - b), evalSamplesPerPrompt: c.evalSamplesPerPrompt, iterations: c.iterations
    })).from({ config: "config", iteration: "iteration" }),
    evaluation: evaluation.from({ update: "update", base: "base", classifier: "classifier", config: "evalConfig", iteration: "iteration" }),
    evalTable: evalTable.from({ evaluation: "evaluation" }).persist(Persist.perIteration("eval"))
  }
}

/** The state definition shared by the RL pipelines (weights, AdamW, tracker; null before the first update). */
export const rlState = {
  type: Port.of<RlState | null>(),
  initial: () => Effect.succeed(null as RlState | null),
  next: "nextState" as const,
  encode: encodeRlState,
  decode: decodeRlState
}
