/**
 * rewards: the reward of every trajectory's final sample under a weighted reward spec
 * (`classifier:1,ink:0.2`), each raw reward kept. A NaN or Inf reward stops the iteration with an
 * error naming the reward, the prompt and the trajectory.
 */
import * as fs from "node:fs"
import { SessionError } from "../../engine/session.ts"
import { NonFiniteError } from "../../kernel/errors.ts"
import { Node, Port } from "../../kernel/node.ts"
import { contractProblem, ModelContractError } from "../../models/external.ts"
import {
  classifierReward,
  gmmPosteriorReward,
  inkReward,
  onnxReward,
  outerRingReward,
  parseRewardSpec,
  quadraticReward,
  rewardContract,
  type RewardModel,
  RewardSpecError
} from "../../rewards/rewards.ts"
import { targetReward } from "../../rewards/target.ts"
import { messageOf } from "../../schemas/message.ts"
import type { RewardClassifier } from "../setup/reward-classifier.ts"
import { rewardOf, type RlConfig, targetOf } from "./config.ts"
import type { Trajectories } from "./rollout.ts"

/** What scoring reads from an RL config (`reward: "default"` resolves by data set). */
export type ScoreConfig = Pick<RlConfig, "dataset" | "reward" | "threads" | "task" | "target">

/** Errors a reward call may raise, besides a NodeFailure for anything unforeseen. */
export const REWARD_ERRORS = [NonFiniteError, RewardSpecError, ModelContractError, SessionError] as const

export interface Rewards {
  /** Weighted total per trajectory. */
  readonly total: Float64Array
  readonly raw: Readonly<Record<string, Float64Array>>
}

/**
 * What is wrong with a config's reward spec: unknown names, ONNX files that do not exist or whose
 * inputs and outputs break the reward contract (x [batch, d] float32 → reward [batch] float32).
 */
export const rewardProblems = (c: ScoreConfig): Array<string> => {
  try {
    return parseRewardSpec(rewardOf(c), c.dataset).flatMap((term) => {
      const file = term.name.startsWith("onnx:") ? term.name.slice(5) : undefined
      if (file === undefined) return []
      if (!fs.existsSync(file)) return [`setting "reward": ONNX reward file ${file} does not exist`]
      const problem = contractProblem(file, rewardContract(c.dataset === "mnist" ? 784 : 2))
      return problem === undefined ? [] : [`setting "reward": ${problem}`]
    })
  } catch (e) {
    return [`setting "reward": ${messageOf(e)}`]
  }
}

/** The proxy classifier's reward for the task: log p(prompted digit | x), or log p(T | x) on tilt. */
const proxyReward = (proxy: RewardClassifier, c: ScoreConfig): RewardModel => {
  const m = c.task === "tilt"
    ? targetReward(proxy.session, proxy.net.classes, targetOf(c))
    : classifierReward(proxy.session, proxy.net.classes)
  return { ...m, name: "proxy" }
}

/** The reward models of a config's spec (the classifier and target terms use the pipeline's cached classifier). */
export const rewardModels = async (c: ScoreConfig, dim: number, classifier: RewardClassifier | undefined) =>
  Promise.all(
    parseRewardSpec(rewardOf(c), c.dataset).map(async (term): Promise<{ model: RewardModel; weight: number }> => {
      const needsClassifier = term.name === "classifier" || term.name === "target" || term.name === "proxy"
      if (needsClassifier && classifier === undefined) {
        throw new RewardSpecError({
          reward: term.name,
          message: `the ${term.name} reward needs the MNIST reward classifier`
        })
      }
      const model = term.name === "proxy"
        ? proxyReward(classifier!, c)
        : term.name === "classifier"
        ? classifierReward(classifier!.session, classifier!.net.classes)
        : term.name === "target"
        ? targetReward(classifier!.session, classifier!.net.classes, targetOf(c))
        : term.name === "ink"
        ? inkReward
        : term.name === "outer-ring"
        ? outerRingReward
        : term.name === "quadratic"
        ? quadraticReward
        : term.name === "gmm-posterior"
        ? gmmPosteriorReward
        : await onnxReward(term.name.slice(5), dim, c.threads)
      return { model, weight: term.weight }
    })
  )

/** Scores final samples; fails on the first non-finite reward, naming it. */
export const scoreSamples = async (
  models: ReadonlyArray<{ model: RewardModel; weight: number }>,
  ctx: {
    dataset: string
    samples: Float32Array
    count: number
    dim: number
    condition: Int32Array
    prompt: ReadonlyArray<string | null>
  }
): Promise<Rewards> => {
  const total = new Float64Array(ctx.count)
  const raw: Record<string, Float64Array> = {}
  for (const { model, weight } of models) {
    const r = await model.score(ctx)
    for (let i = 0; i < ctx.count; i++) {
      if (!Number.isFinite(r[i])) {
        throw new NonFiniteError({
          message: `reward ${model.name} is ${r[i]} for trajectory ${i} (prompt ${JSON.stringify(ctx.prompt[i])})`
        })
      }
      total[i] += weight * r[i]
    }
    raw[model.name] = r
  }
  return { total, raw }
}

export const rewards = Node.make({
  name: "rewards",
  doc: "weighted terminal rewards of the final samples, each raw reward kept",
  inputs: {
    trajectories: Port.of<Trajectories>(),
    classifier: Port.of<RewardClassifier | undefined>(),
    config: Port.of<ScoreConfig>()
  },
  run: ({ trajectories, classifier, config }) =>
    Node.promise(REWARD_ERRORS, async () => {
      const r = trajectories.rollout
      const models = await rewardModels(config, r.d, classifier)
      const { condition, prompt } = trajectories.prompts
      return await scoreSamples(models, {
        dataset: config.dataset,
        samples: r.final,
        count: r.chains,
        dim: r.d,
        condition,
        prompt
      })
    }),
  metrics: (r) => {
    const mean = (x: Float64Array) => x.reduce((a, b) => a + b, 0) / x.length
    const m = mean(r.total)
    return {
      reward_mean: m,
      reward_std: Math.sqrt(r.total.reduce((a, b) => a + (b - m) ** 2, 0) / r.total.length),
      ...Object.fromEntries(Object.entries(r.raw).map(([k, v]) => [`reward.${k}_mean`, mean(v)]))
    }
  }
})
