/**
 * The update stage of RL on the forward process (DiffusionNFT, AWM; docs/algorithms.md §14): the rollout's
 * clean samples and their advantages into training/forward-update.ts. The stage reads the final samples
 * only, so the rollout's sampler — the ODE by default — is the user's choice.
 */
import { Effect } from "effect"
import { GraphError } from "../../engine/graph.ts"
import { SessionError } from "../../engine/session.ts"
import { TrainError } from "../../engine/train-step.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import type { ForwardKind } from "../../models/forward-loss.ts"
import { type ForwardBatch, type ForwardRequest, runForwardUpdates } from "../../training/forward-update.ts"
import type { BaseModel } from "../setup/base-model.ts"
import type { Advantages } from "./advantages.ts"
import type { RlConfig } from "./config.ts"
import type { Trajectories } from "./rollout.ts"
import type { RlState } from "./state.ts"
import type { UpdateResult } from "./update.ts"

/** The advantage clip of both references (NVlabs `adv_clip_max`, Flow-Factory `adv_clip_range`). */
const ADV_CLIP = 5

export type ForwardConfig =
  & Pick<
    RlConfig,
    "lr" | "weightDecay" | "innerEpochs" | "batchSize" | "threads" | "beta" | "timestepFraction"
  >
  & { readonly nftBeta?: number | undefined; readonly clipRange?: number | undefined }

export const forwardRequestOf = (kind: ForwardKind, c: ForwardConfig): ForwardRequest => ({
  kind,
  lr: c.lr,
  weightDecay: c.weightDecay,
  innerEpochs: c.innerEpochs,
  batchSize: c.batchSize,
  threads: c.threads,
  beta: c.beta,
  nftBeta: c.nftBeta ?? 1,
  advClip: ADV_CLIP,
  clipRange: c.clipRange ?? 0,
  timestepFraction: c.timestepFraction
})

/** The samples an update learns from: the rollout's final latents at the grid's step times. */
export const forwardBatchOf = (tr: Trajectories, base: Pick<BaseModel, "net" | "parameterization">): ForwardBatch => ({
  final: tr.rollout.final,
  chains: tr.rollout.chains,
  d: tr.rollout.d,
  condition: base.net.classes > 0 ? tr.prompts.condition : undefined,
  times: tr.steps.map((s) => s.t),
  process: tr.process,
  parameterization: base.parameterization
})

export const forwardUpdate = (kind: ForwardKind) =>
  Node.make({
    name: "update",
    doc: kind === "nft"
      ? "DiffusionNFT: implicit positive/negative policies on re-noised samples; the old policy soft-updated"
      : "AWM: advantage-weighted flow matching with PPO-clip on re-noised samples",
    inputs: {
      trajectories: Port.of<Trajectories>(),
      advantages: Port.of<Advantages>(),
      state: Port.of<RlState | null>(),
      base: Port.of<BaseModel>(),
      config: Port.of<ForwardConfig>()
    },
    run: ({ trajectories, advantages, state, base, config }) =>
      Effect.gen(function*() {
        const rng = yield* Rng
        const u = yield* Node.promise([TrainError, GraphError, SessionError], () =>
          runForwardUpdates(
            forwardBatchOf(trajectories, base),
            advantages.perTrajectory,
            state,
            base,
            forwardRequestOf(kind, config),
            rng.stream("update")
          ))
        const next: RlState = {
          ...u.trained,
          tracker: advantages.tracker,
          ...(u.old === undefined ? {} : { old: u.old })
        }
        return { state: next, metrics: u.metrics } satisfies UpdateResult
      }),
    metrics: (u: UpdateResult) => u.metrics
  })
