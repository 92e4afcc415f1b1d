/**
 * update (adjoint matching): the regression of the fine-tuned drift onto the adjoint's target
 * (docs/algorithms.md §10), through the engine's AdamW on rows (trajectory j, step k):
 *
 *   ℓ_jk = ‖(μ_ft(x_k) − μ_base(x_k))/s_k + a s_k‖²
 *
 *  - stochastic (adjoint matching, arXiv 2409.08861, am_trainer.py): s_k the memoryless sampler's std;
 *  - deterministic (seed 002, this project's construction): s_k² = h_k c̄_k.
 * a is a_{k+1} by default — the first-order condition of the discrete problem, δ_k = −s_k² ∇J_{k+1}(x_{k+1}):
 * the control of step k moves x_{k+1} — or a_k at x_k (`targetAdjoint=state`, am_trainer.py's index; the
 * two agree as the step shrinks). Measured on the tilted-Gaussian toy (test/rl/adjoint-toys.test.ts,
 * 20 steps): the mean of the tuned samples is off by 0.005 with a_{k+1} and by 0.075 with a_k.
 * Each trajectory trains 2 time indices from the first 60 % of the window and 2 from the rest (the
 * reference's `sample_time_indices`); rows whose √ℓ reaches the clip threshold (`LossClip`) are dropped.
 * One optimizer step per minibatch of `batchSize` trajectories, the loss averaged over its rows.
 */
import { Effect } from "effect"
import type { AdjointKind } from "../../diffusion/adjoint.ts"
import type { Rollout } from "../../diffusion/rollout.ts"
import { GraphError } from "../../engine/graph.ts"
import { SessionError } from "../../engine/session.ts"
import { TrainError } from "../../engine/train-step.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import type { AmUpdateRequest } from "../../training/adjoint-rows.ts"
import { adjointMatchingUpdate } from "../../training/adjoint-update.ts"
import type { Adjoints } from "../../training/adjoints.ts"
import { startState } from "../../training/train-state.ts"
import type { Trajectories } from "../rl/rollout.ts"
import type { RlState } from "../rl/state.ts"
import type { UpdateResult } from "../rl/update.ts"
import type { BaseModel } from "../setup/base-model.ts"
import { baseOutputsFor } from "./adjoint.ts"
import type { AmConfig } from "./config.ts"

const unconditionalBase = (r: Rollout, base: BaseModel, kind: AdjointKind, threads: number) => {
  const condition = new Int32Array(r.chains).fill(base.net.classes)
  let built: ReturnType<typeof baseOutputsFor> | undefined
  const outputs = new Map<number, Promise<Float32Array>>()
  return {
    condition,
    baseOutput: (k: number) => {
      built ??= baseOutputsFor({ rollout: r, kind, base, threads, condition })
      if (!outputs.has(k)) outputs.set(k, built.then((b) => b.output(k)))
      return outputs.get(k)!
    },
    release: async () => {
      if (built !== undefined) await (await built).release()
    }
  }
}

/** The adjoint-matching update's settings, from the config (the training loop's own request type). */
const amRequestOf = (config: AmConfig, base: BaseModel, deterministic: boolean): AmUpdateRequest => ({
  net: base.net,
  residual: false,
  deterministic,
  targetAdjoint: config.targetAdjoint,
  costWeight: config.costWeight ?? "constant",
  lr: config.lr,
  batchSize: config.batchSize,
  innerEpochs: config.innerEpochs,
  threads: config.threads,
  lossClip: config.lossClip,
  lossClipOrder: config.lossClipOrder,
  gradClip: config.gradClip,
  warmupSteps: config.warmupSteps,
  weightDecay: config.weightDecay,
  promptDropout: config.promptDropout
})

/** The update node of the adjoint-matching pipelines (the stage `update`). */
export const adjointUpdate = (
  variant: { readonly deterministic: boolean; readonly kind: (c: AmConfig) => AdjointKind }
) =>
  Node.make({
    name: "update",
    doc: variant.deterministic
      ? "regress the control onto −c·a_{k+1} (value adjoint of the current policy) on sampled steps"
      : "regress the fine-tuned drift onto the lean adjoint's target on the reference's time indices",
    inputs: {
      trajectories: Port.of<Trajectories>(),
      adjoint: Port.of<Adjoints>(),
      state: Port.of<RlState | null>(),
      base: Port.of<BaseModel>(),
      config: Port.of<AmConfig>()
    },
    run: ({ trajectories, adjoint, state, base, config }) =>
      Effect.gen(function*() {
        const rng = yield* Rng
        return yield* Node.promise([TrainError, GraphError, SessionError], async (): Promise<UpdateResult> => {
          const init = startState(state, base.params)
          const condition = base.net.classes > 0 ? trajectories.prompts.condition : undefined
          const r = trajectories.rollout
          // Restored adjoints carry no base outputs: computed again, the same way the adjoint node does.
          const fallback = adjoint.baseOutputs === undefined
            ? await baseOutputsFor({
              rollout: r,
              kind: variant.kind(config),
              base,
              threads: config.threads,
              condition
            })
            : undefined
          const unconditional = condition !== undefined && config.promptDropout > 0
            ? unconditionalBase(r, base, variant.kind(config), config.threads)
            : undefined
          const out = await adjointMatchingUpdate({
            rollout: r,
            adjoints: adjoint,
            process: base.process,
            ...(condition === undefined ? {} : { condition }),
            ...(unconditional === undefined ? {} : { unconditional }),
            baseOutput: (k) =>
              adjoint.baseOutputs?.[k - adjoint.from]
                ? Promise.resolve(adjoint.baseOutputs[k - adjoint.from])
                : fallback!.output(k),
            request: amRequestOf(config, base, variant.deterministic),
            init,
            // The previous iteration's state is superseded by this update's (its checkpoint holds a copy).
            donate: state !== null,
            ...(state?.lossClip === undefined ? {} : { clip: state.lossClip }),
            stream: rng.stream("update")
          }).finally(() => unconditional?.release())
          await fallback?.release()
          return { state: { ...out.state, tracker: {}, lossClip: out.clip }, metrics: out.metrics }
        })
      }),
    metrics: (u: UpdateResult) => u.metrics
  })
