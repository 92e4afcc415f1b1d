/**
 * evaluation: every `evalEvery` iterations (and at the last), on the held-out prompt set with fixed
 * seeds, the ODE (η = 0) and the training SDE from the same initial noise at each of `evalSteps`
 * (docs/algorithms.md §11): mean rewards with standard errors, the reward gap SDE − ODE (paired), and
 * the improvement of the ODE reward over the base model's ODE reward on the same noise; for MNIST also
 * the quality of the ODE samples of both models beside the reward (FD, diversity, judge; §11.3).
 */
import type * as arrow from "apache-arrow"
import { loadPromptSet, MNIST_NULL_CONDITION, MNIST_PROMPTS } from "../../data/prompts.ts"
import { pathKl } from "../../diffusion/path-kl.ts"
import { rollout as sampleChains } from "../../diffusion/rollout.ts"
import { ode as odeSampler, type Sampler, SamplerError, type SamplerName, samplerOf } from "../../diffusion/samplers.ts"
import { GraphError } from "../../engine/graph.ts"
import type { EngineSession } from "../../engine/session.ts"
import { Node, Port } from "../../kernel/node.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import { openStream } from "../../random/streams.ts"
import { meanStd } from "../rl/advantages.ts"
import { noiseOf, type RlConfig, targetOf } from "../rl/config.ts"
import { REWARD_ERRORS, rewardModels, scoreSamples } from "../rl/rewards.ts"
import { gridOf } from "../rl/rollout.ts"
import type { UpdateResult } from "../rl/update.ts"
import type { BaseModel } from "../setup/base-model.ts"
import { type RewardClassifier, usesProxy } from "../setup/reward-classifier.ts"
import { besideReward } from "./beside-reward.ts"
import { type EvalRow, type Evaluation, sampleTableOf, tableOf } from "./eval-tables.ts"
import { type QualityReference, qualityReference, releaseQuality } from "./quality.ts"
import { releaseTilt, type TiltReference, tiltReference } from "./tilt.ts"

/** Mean and its standard error. */
const meanSe = (xs: ArrayLike<number>) => {
  const { mean, std } = meanStd(xs, true)
  return { mean, se: std / Math.sqrt(xs.length) }
}

/** What the evaluation reads of a pipeline's config (every RL and adjoint-matching pipeline has these). */
export type EvalConfig =
  & { readonly lambda?: number | undefined; readonly adjointSteps?: number | undefined }
  & Pick<
    RlConfig,
    | "dataset"
    | "reward"
    | "task"
    | "target"
    | "iterations"
    | "sampler"
    | "eta"
    | "noiseLevel"
    | "steps"
    | "shift"
    | "cfg"
    | "evalEvery"
    | "evalSteps"
    | "evalSamplesPerPrompt"
    | "threads"
  >

/** The step counts evaluated: `evalSteps` and the training step count, ascending. */
export const evalStepsOf = (c: Pick<RlConfig, "evalSteps" | "steps">): Array<number> =>
  [...new Set([...c.evalSteps, c.steps])].sort((a, b) => a - b)

interface EvalSet {
  readonly count: number
  readonly condition: Int32Array
  readonly prompt: ReadonlyArray<string | null>
  readonly conditional: boolean
}

/** The held-out prompts, `evalSamplesPerPrompt` samples each (tilt: as many unconditional samples as MNIST's). */
const evalSet = (base: BaseModel, perPrompt: number, tilt: boolean): EvalSet => {
  if (tilt) {
    const count = MNIST_PROMPTS.prompts.length * perPrompt
    return {
      count,
      conditional: false,
      condition: new Int32Array(count).fill(MNIST_NULL_CONDITION),
      prompt: new Array<null>(count).fill(null)
    }
  }
  const conditional = base.net.classes > 0
  const set = loadPromptSet(conditional ? "mnist" : "toy", conditional)
  const count = set.prompts.length * perPrompt
  return {
    count,
    conditional,
    condition: Int32Array.from({ length: count }, (_, i) => set.conditions[i % set.prompts.length]),
    prompt: Array.from({ length: count }, (_, i) => (conditional ? set.prompts[i % set.prompts.length] : null))
  }
}

/** The rewards' means and s.e., the SDE − ODE gap, the improvement over the base and the path KL at one step count. */
const rewardMetrics = (
  steps: number,
  r: { readonly ode: Float64Array; readonly sde: Float64Array; readonly baseOde: Float64Array },
  kl: { readonly mean: number; readonly se: number }
) => {
  const [o, sd] = [meanSe(r.ode), meanSe(r.sde)]
  const gap = meanSe(r.sde.map((v, i) => v - r.ode[i]))
  const imp = meanSe(r.ode.map((v, i) => v - r.baseOde[i]))
  return {
    imp,
    metrics: {
      [`eval.ode.s${steps}.reward_mean`]: o.mean,
      [`eval.ode.s${steps}.reward_se`]: o.se,
      [`eval.sde.s${steps}.reward_mean`]: sd.mean,
      [`eval.sde.s${steps}.reward_se`]: sd.se,
      [`eval.gap.s${steps}`]: gap.mean,
      [`eval.gap.s${steps}.se`]: gap.se,
      [`eval.improvement.s${steps}`]: imp.mean,
      [`eval.improvement.s${steps}.se`]: imp.se,
      [`eval.path_kl.s${steps}`]: kl.mean,
      [`eval.path_kl.s${steps}.se`]: kl.se
    }
  }
}

/**
 * The SDE an evaluation reads the gap and the path KL along: the training sampler, or — where that is
 * deterministic (the forward-process pipelines' ODE rollouts, §14) — a reference SDE, Flow-GRPO's at its
 * level 0.7 on rectified flow and DDIM η = 1 on VP, so their KL to the base is measured, not zero by fiat.
 */
const evaluationSde = (
  c: Pick<EvalConfig, "sampler" | "eta" | "noiseLevel">,
  process: string
): { readonly sampler: SamplerName; readonly noise: number } =>
  c.sampler !== "ode" && noiseOf(c) > 0
    ? { sampler: c.sampler, noise: noiseOf(c) }
    : process === "rf"
    ? { sampler: "flow-grpo", noise: 0.7 }
    : { sampler: "ddim", noise: 1 }

type Policy = Awaited<ReturnType<typeof networkPolicy>>
/**
 * The three scored sample sets of an evaluation at one step count, from fixed evaluation seeds independent
 * of the run's seed (every run is measured on the same noise): the tuned ODE, the tuned SDE (recorded: the
 * path KL is measured along it, §13.3) and the base's ODE.
 */
const scoredRuns = async (
  steps: number,
  policies: { tuned: Policy; base: Policy },
  models: Awaited<ReturnType<typeof rewardModels>>,
  set: EvalSet,
  base: BaseModel,
  config: EvalConfig
) => {
  const common = {
    // Evaluation grids start at the top of the schedule whatever the step count (trailing, §1.1).
    grid: gridOf(base.process, steps, config.shift, "trailing"),
    chains: set.count,
    condition: base.net.classes > 0 ? set.condition : undefined,
    initStream: (j: number) => openStream(["eval", "init", j]),
    stepStream: (j: number) => openStream(["eval", "step", j])
  }
  const score = async (policy: Policy, sampler: Sampler, noise: number, record = false) => {
    const run = await sampleChains({ ...common, policy, sampler, noise, record })
    const scored = await scoreSamples(models, {
      dataset: config.dataset,
      samples: run.final,
      count: set.count,
      dim: base.net.dim,
      condition: set.condition,
      prompt: set.prompt
    })
    return { total: scored.total, run }
  }
  const ode = await score(policies.tuned, odeSampler, 0)
  const sdeOf = evaluationSde(config, base.process.kind)
  const sde = await score(policies.tuned, samplerOf(sdeOf.sampler), sdeOf.noise, true)
  const baseOde = await score(policies.base, odeSampler, 0)
  return { ode, sde, baseOde }
}

/** ODE and SDE rewards of the tuned policy, the base's ODE reward, the path KL and what is measured beside. */
const evaluateAt = async (
  steps: number,
  policies: { tuned: Policy; base: Policy },
  models: Awaited<ReturnType<typeof rewardModels>>,
  refs: { quality: QualityReference | undefined; tilt: TiltReference | undefined; gold: EngineSession | undefined },
  set: EvalSet,
  base: BaseModel,
  config: EvalConfig
) => {
  const runs = await scoredRuns(steps, policies, models, set, base, config)
  const [ode, sde, baseOde] = [runs.ode.total, runs.sde.total, runs.baseOde.total]
  const kl = meanSe(
    await pathKl({
      steps: runs.sde.run.steps,
      latents: runs.sde.run.latents!,
      chains: set.count,
      d: base.net.dim,
      policy: policies.tuned,
      base: policies.base,
      condition: base.net.classes > 0 ? set.condition : undefined
    })
  )
  const odeSamples = { tuned: runs.ode.run.final, base: runs.baseOde.run.final }
  const { metrics: rewardsAt, imp } = rewardMetrics(steps, { ode, sde, baseOde }, kl)
  const beside = await besideReward({ steps, odeSamples, baseOde, imp, ...refs, set, config })
  const rows: Array<EvalRow> = Array.from({ length: set.count }, (_, i) => ({
    steps,
    sample: i,
    prompt: set.prompt[i],
    ode: ode[i],
    sde: sde[i],
    baseOde: baseOde[i]
  }))
  return { metrics: { ...rewardsAt, ...beside }, rows, odeSamples }
}

export const evaluation = Node.make({
  name: "evaluation",
  doc: "ODE vs SDE rewards from the same noise at several step counts, gap and improvement over the base",
  inputs: {
    update: Port.of<UpdateResult>(),
    base: Port.of<BaseModel>(),
    classifier: Port.of<RewardClassifier | undefined>(),
    judge: Port.of<RewardClassifier | undefined>(),
    data: Port.of<arrow.Table>(),
    config: Port.of<EvalConfig>(),
    iteration: Port.of<number>()
  },
  run: ({ update, base, classifier, judge, data, config, iteration }) =>
    Node.promise([...REWARD_ERRORS, SamplerError, GraphError], async (): Promise<Evaluation | undefined> => {
      const last = iteration === config.iterations - 1
      if ((iteration + 1) % config.evalEvery !== 0 && !last) return undefined
      const set = evalSet(base, config.evalSamplesPerPrompt, config.task === "tilt")
      const models = await rewardModels(config, base.net.dim, classifier)
      // The EMA of the weights is the policy evaluated when one is kept (flow_grpo evaluates its EMA).
      const policies = {
        tuned: await networkPolicy({
          ...base,
          params: update.state.ema ?? update.state.params,
          cfg: config.cfg,
          threads: config.threads
        }),
        // The base model's session is built once and kept: every evaluation samples the same weights.
        base: await networkPolicy({ ...base, cfg: config.cfg, threads: config.threads, frozen: true })
      }
      // MNIST only: the quality measures need the classifier's features, real test digits and the judge.
      const quality = classifier !== undefined && judge !== undefined && set.conditional
        ? await qualityReference(data, classifier, judge, config.threads)
        : undefined
      // With the proxy as the reward, the judge scores the same task as the gold reward.
      const gold = judge !== undefined && usesProxy(config) ? judge.session : undefined
      const tilt = classifier !== undefined && judge !== undefined && config.task === "tilt"
        ? await tiltReference(data, classifier, judge, targetOf(config), config.threads)
        : undefined
      const metrics: Record<string, number> = {}
      const rows: Array<EvalRow> = []
      let samples: arrow.Table | undefined
      for (const steps of evalStepsOf(config)) {
        const at = await evaluateAt(steps, policies, models, { quality, tilt, gold }, set, base, config)
        Object.assign(metrics, at.metrics)
        rows.push(...at.rows)
        if (steps === config.steps) samples = sampleTableOf(at.odeSamples, set, iteration, steps, base.shape)
      }
      await policies.tuned.release()
      await policies.base.release()
      if (quality !== undefined) await releaseQuality(quality)
      if (tilt !== undefined) await releaseTilt(tilt)
      return { table: tableOf(rows, iteration, set.conditional), samples: samples!, metrics }
    }),
  metrics: (e) => e?.metrics ?? {}
})
