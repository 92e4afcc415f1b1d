/**
 * evaluation: every `evalEvery` iterations (and at the last), on the held-out prompt set with fixed
 * seeds, the ODE (η = 0) and the training SDE from the same initial noise at each of `evalSteps`
 * (docs/algorithms.md §11): mean rewards with standard errors, the reward gap SDE − ODE (paired), and
 * the improvement of the ODE reward over the base model's ODE reward on the same noise.
 */
import { Effect } from "effect"
import type * as arrow from "apache-arrow"
import { Node, Port } from "../kernel/node.ts"
import { openStream } from "../random/streams.ts"
import { Column, TableDef } from "../schemas/columns.ts"
import { rollout } from "../diffusion/rollout.ts"
import { ode, samplerOf } from "../diffusion/samplers.ts"
import { networkPolicy } from "../models/network-policy.ts"
import { loadPromptSet } from "../data/prompts.ts"
import { gridOf, type RolloutRequest } from "./rollout.ts"
import { rewardModels, scoreSamples } from "./score.ts"
import type { BaseModel } from "./base-model.ts"
import type { RewardClassifier } from "./reward-classifier.ts"
import type { UpdateResult } from "./update.ts"
import { meanStd } from "./advantages.ts"

export interface EvalRequest extends RolloutRequest {
  readonly dataset: string
  readonly reward: string
  readonly evalEvery: number
  readonly evalSteps: ReadonlyArray<number>
  readonly evalSamplesPerPrompt: number
  readonly iterations: number
}

export const EvalTable = new TableDef("eval", 1, {
  iteration: Column.int32("iteration whose weights were evaluated"),
  steps: Column.int32("sampling steps"),
  sample: Column.int32("sample index (same initial noise across samplers and step counts)"),
  prompt: Column.utf8("prompt", true),
  reward_ode: Column.float64("reward of the ODE sample of the fine-tuned model"),
  reward_sde: Column.float64("reward of the training-SDE sample of the fine-tuned model"),
  reward_base_ode: Column.float64("reward of the base model's ODE sample")
})

export interface Evaluation {
  readonly table: arrow.Table
  readonly metrics: Readonly<Record<string, number>>
}

/** Mean and its standard error. */
const meanSe = (xs: ArrayLike<number>) => {
  const { mean, std } = meanStd(xs, true)
  return { mean, se: std / Math.sqrt(xs.length) }
}

export const evaluation = Node.make({
  name: "evaluation",
  doc: "ODE vs SDE rewards from the same noise at several step counts, gap and improvement over the base",
  inputs: { update: Port.of<UpdateResult>(), base: Port.of<BaseModel>(), classifier: Port.of<RewardClassifier | undefined>(), config: Port.of<EvalRequest>(), iteration: Port.of<number>() },
  run: ({ update, base, classifier, config, iteration }) =>
    Effect.tryPromise({
      try: async (): Promise<Evaluation | undefined> => {
        const last = iteration === config.iterations - 1
        if ((iteration + 1) % config.evalEvery !== 0 && !last) return undefined
        const conditional = base.net.classes > 0
        const set = loadPromptSet(conditional ? "mnist" : "toy", conditional)
        const count = set.prompts.length * config.evalSamplesPerPrompt
        const condition = Int32Array.from({ length: count }, (_, i) => set.conditions[i % set.prompts.length])
        const prompt = Array.from({ length: count }, (_, i) => (conditional ? set.prompts[i % set.prompts.length] : null))
        const models = await rewardModels(config.reward, config.dataset, base.net.dim, classifier, config.threads)
        // The EMA of the weights is the policy evaluated when one is kept (flow_grpo evaluates its EMA).
        const tuned = await networkPolicy({ ...base, params: update.state.ema ?? update.state.params, cfg: config.cfg, threads: config.threads })
        const basePolicy = await networkPolicy({ ...base, cfg: config.cfg, threads: config.threads })
        // Fixed evaluation seeds, independent of the run's seed: every run is measured on the same noise.
        const initStream = (j: number) => openStream(["eval", "init", j])
        const stepStream = (j: number) => openStream(["eval", "step", j])
        const metrics: Record<string, number> = {}
        const rows: Array<{ steps: number; sample: number; prompt: string | null; ode: number; sde: number; baseOde: number }> = []
        for (const steps of config.evalSteps) {
          // Evaluation grids start at the top of the schedule whatever the step count (trailing, §1.1).
          const grid = gridOf(base.process, steps, config.shift, "trailing")
          const common = { grid, chains: count, ...(conditional ? { condition } : {}), initStream, stepStream }
          const score = async (policy: typeof tuned, sampler: typeof ode, noise: number) =>
            (await scoreSamples(models, { dataset: config.dataset, samples: (await rollout({ ...common, policy, sampler, noise })).final, count, dim: base.net.dim, condition, prompt })).total
          const rOde = await score(tuned, ode, 0)
          const rSde = await score(tuned, samplerOf(config.sampler), config.noise)
          const rBase = await score(basePolicy, ode, 0)
          const o = meanSe(rOde)
          const sd = meanSe(rSde)
          const gap = meanSe(rSde.map((v, i) => v - rOde[i]))
          const imp = meanSe(rOde.map((v, i) => v - rBase[i]))
          Object.assign(metrics, {
            [`eval.ode.s${steps}.reward_mean`]: o.mean, [`eval.ode.s${steps}.reward_se`]: o.se,
            [`eval.sde.s${steps}.reward_mean`]: sd.mean, [`eval.sde.s${steps}.reward_se`]: sd.se,
            [`eval.gap.s${steps}`]: gap.mean, [`eval.gap.s${steps}.se`]: gap.se,
            [`eval.improvement.s${steps}`]: imp.mean, [`eval.improvement.s${steps}.se`]: imp.se
          })
          for (let i = 0; i < count; i++) rows.push({ steps, sample: i, prompt: prompt[i], ode: rOde[i], sde: rSde[i], baseOde: rBase[i] })
        }
        await tuned.session.release()
        await basePolicy.session.release()
        const table = EvalTable.build(rows.length, {
          iteration: new Int32Array(rows.length).fill(iteration),
          steps: Int32Array.from(rows, (r) => r.steps),
          sample: Int32Array.from(rows, (r) => r.sample),
          prompt: conditional ? rows.map((r) => r.prompt) : null,
          reward_ode: Float64Array.from(rows, (r) => r.ode),
          reward_sde: Float64Array.from(rows, (r) => r.sde),
          reward_base_ode: Float64Array.from(rows, (r) => r.baseOde)
        }, {})
        return { table, metrics }
      },
      catch: (e) => e
    }),
  metrics: (e) => e?.metrics ?? {}
})

/** The evaluation table when this iteration was evaluated (for persisting eval/iter-N.parquet). */
export const evalTable = Node.make({
  name: "evalTable",
  doc: "the rows of an evaluation, when there was one",
  inputs: { evaluation: Port.of<Evaluation | undefined>() },
  run: ({ evaluation }) => Effect.succeed(evaluation?.table)
})
