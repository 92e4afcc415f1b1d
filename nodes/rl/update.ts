/**
 * Policy updates through the engine's AdamW, on rows (trajectory j, step k) of the trained steps:
 *  - policyUpdate: PPO-clip (+ KL to the base model), DDPO / GRPO family (docs/algorithms.md §4.2,
 *    §8, §12.9). Each inner epoch shuffles trajectories and takes one optimizer step per minibatch
 *    of `batchSize` trajectories over all their trained steps — the gradient the references
 *    accumulate over `grad_accum × trained steps` micro-steps, computed as one batch.
 *  - pairedUpdate: SDPO's reward-difference regression (§9.4) with step-shuffled minibatches
 *    (§9.5): each pair gets its own permutation of the steps, and the optimizer step at position j
 *    mixes different actual steps across pairs.
 * Both are one factory (`updateNode`) with its own loss, minibatch partition and row values.
 *
 * The old log-prob of a row is the one the sampler stored at rollout time, as in every reference
 * (flow_grpo, ddpo-pytorch, sdpo store `log_probs` while sampling). The first optimizer step runs
 * at θ_old, so its graph log-probs against the stored ones are a free check of the on-policy
 * invariant (`logprob_deviation`). `rescoreOldLogProb` re-computes them with the loss's own graph
 * instead (a diagnosis: the first ratio is then exactly 1).
 *
 * Trained steps (§4.2, §5.1, §8): of the N steps, each trajectory trains ⌊N·timestepFraction⌋ of its
 * stochastic steps — the first ones in order (flow_grpo: 0.99 drops the last transition) or, with
 * `shuffleTimesteps`, a fresh permutation per trajectory and epoch (ddpo-pytorch, DanceGRPO's 0.6).
 */
import { Effect } from "effect"
import { samplerLogProb } from "../../diffusion/samplers.ts"
import { GraphError } from "../../engine/graph.ts"
import { SessionError } from "../../engine/session.ts"
import { TrainError } from "../../engine/train-step.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { type PolicyLossConfig, ppoLoss, sdpoLoss } from "../../models/policy-loss.ts"
import { permutation } from "../../random/streams.ts"
import { type Row, trainedSteps, type UpdatePlan } from "../../training/policy-batches.ts"
import { runUpdates } from "../../training/policy-update.ts"
import type { UpdateRequest } from "../../training/update-request.ts"
import type { BaseModel } from "../setup/base-model.ts"
import type { Advantages, StepAdvantages } from "./advantages.ts"
import { cpsLogProbOf, ratioNormOf, type RlConfig, type RlVariant } from "./config.ts"
import type { Trajectories } from "./rollout.ts"
import type { RlState } from "./state.ts"

/** The update settings of an RL config; the log-prob convention is the training sampler's (§6.2). */
export const updateRequestOf = (c: RlConfig, rationorm: boolean): UpdateRequest => ({
  lr: c.lr,
  weightDecay: c.weightDecay,
  innerEpochs: c.innerEpochs,
  clipRange: c.clipRange,
  beta: c.beta,
  klForm: c.klForm,
  cfg: c.cfg,
  batchSize: c.batchSize,
  threads: c.threads,
  rationorm,
  logProb: samplerLogProb(c.sampler, cpsLogProbOf(rationorm)),
  timestepFraction: c.timestepFraction,
  shuffleTimesteps: c.shuffleTimesteps,
  rescoreOldLogProb: c.rescoreOldLogProb,
  ema: c.ema,
  emaInterval: c.emaInterval
})

export interface UpdateResult {
  readonly state: RlState
  readonly metrics: Readonly<Record<string, number>>
}

type UpdateInputs<Adv, Cfg> = {
  trajectories: Trajectories
  advantages: Adv
  state: RlState | null
  base: BaseModel
  config: Cfg
}

/** An update node (the stage `update`): its loss, minibatch partition and row values from the inputs. */
const updateNode = <Adv extends { readonly tracker: RlState["tracker"] }, Cfg extends RlConfig>(def: {
  readonly doc: string
  readonly request: (config: Cfg) => UpdateRequest
  readonly plan: (input: UpdateInputs<Adv, Cfg>, request: UpdateRequest) => UpdatePlan
}) =>
  Node.make({
    name: "update",
    doc: def.doc,
    inputs: {
      trajectories: Port.of<Trajectories>(),
      advantages: Port.of<Adv>(),
      state: Port.of<RlState | null>(),
      base: Port.of<BaseModel>(),
      config: Port.of<Cfg>()
    },
    run: (input: UpdateInputs<Adv, Cfg>) =>
      Effect.gen(function*() {
        const rng = yield* Rng
        const request = def.request(input.config)
        const u = yield* Node.promise([TrainError, GraphError, SessionError], () =>
          runUpdates(
            def.plan(input, request),
            input.trajectories,
            input.state,
            input.base,
            request,
            rng.stream("update")
          ))
        const { tracker } = input.advantages
        const state: RlState = { ...u.trained, tracker, ...(u.ema === undefined ? {} : { ema: u.ema }) }
        return { state, metrics: u.metrics }
      }),
    metrics: (u: UpdateResult) => u.metrics
  })

const lossKeyOf = (base: BaseModel, config: UpdateRequest): PolicyLossConfig => ({
  net: base.net,
  cfg: config.cfg,
  clipRange: config.clipRange,
  beta: config.beta,
  rationorm: config.rationorm,
  logProb: config.logProb
})

/** PPO-clip (+ KL) on shuffled minibatches of trajectories (DDPO, the GRPO family). */
export const policyUpdate = (variant: Pick<RlVariant, "rationorm">) =>
  updateNode<Advantages, RlConfig>({
    doc: "PPO-clip (+ KL) updates on shuffled minibatches; the new iteration state",
    // GRPO-Guard is Precise's ratio normalisation as a setting (§4.5): one loss, one test.
    request: (c) => updateRequestOf(c, ratioNormOf(variant, c)),
    plan: ({ trajectories, advantages, base }, config) => {
      const lossKey = lossKeyOf(base, config)
      const n = trajectories.rollout.chains
      const stepsOf = trainedSteps(trajectories, config)
      return {
        name: "ppo-train-step",
        loss: ppoLoss(lossKey),
        lossKey,
        partition: (_, stream) => {
          const order = permutation(stream, n)
          const batches: Array<Array<Row>> = []
          for (let i = 0; i < n; i += config.batchSize) {
            const members = Array.from(order.subarray(i, Math.min(n, i + config.batchSize)))
            batches.push(members.flatMap((j) => stepsOf(stream, j).map((k) => [j, k] as const)))
          }
          return batches
        },
        values: { adv: (j) => advantages.perTrajectory[j], weight: (_, __, rows) => 1 / rows }
      }
    }
  })

/** SDPO's reward-difference regression on step-shuffled minibatches of pairs (§9.4, §9.5). */
export const pairedUpdate = updateNode<StepAdvantages, RlConfig & { readonly lambda: number }>({
  doc: "SDPO reward-difference regression with step-shuffled minibatches of pairs",
  request: (c) => ({ ...updateRequestOf(c, false), beta: 0 }),
  plan: ({ trajectories, advantages, base, config: { lambda } }, config) => {
    if (trajectories.prompts.groupSize !== 2) {
      throw new Error(`update: SDPO trains on pairs; groupSize is ${trajectories.prompts.groupSize}, expected 2`)
    }
    const lossKey = lossKeyOf(base, config)
    const pairs = trajectories.rollout.chains / 2
    const N = trajectories.steps.length
    // Each pair's steps are permuted (§9.5); both members take the same step at each position.
    const stepsOf = trainedSteps(trajectories, { ...config, shuffleTimesteps: true })
    return {
      name: "sdpo-train-step",
      loss: sdpoLoss(lossKey),
      lossKey,
      partition: (_, stream) => {
        const order = permutation(stream.child("pairs"), pairs)
        const perms = Array.from({ length: pairs }, (_, p) => stepsOf(stream, p))
        const batches: Array<Array<Row>> = []
        for (let j = 0; j < perms[0].length; j++) {
          for (let i = 0; i < pairs; i += config.batchSize) {
            const members = Array.from(order.subarray(i, Math.min(pairs, i + config.batchSize)))
            batches.push(members.flatMap((p) => [[2 * p, perms[p][j]], [2 * p + 1, perms[p][j]]] as const))
          }
        }
        return batches
      },
      values: {
        adv: (j, k) => advantages.perStep[j * N + k],
        // λ^k, with k the step's original index (it stays attached through the shuffle).
        weight: (_, k) => lambda ** k
      }
    }
  }
})
