/** The RL rollout stage and the trajectories it produces (the type every later stage reads). */
import { Effect } from "effect"
import { type GridSpacing, leadingGrid, shiftGrid, trailingGrid, uniformGrid } from "../../diffusion/grids.ts"
import type { Process } from "../../diffusion/process.ts"
import { type Rollout, rollout as sampleChains, type StepRecord } from "../../diffusion/rollout.ts"
import { ode, SamplerError, samplerOf } from "../../diffusion/samplers.ts"
import { GraphError } from "../../engine/graph.ts"
import type { ParamValues } from "../../engine/params.ts"
import { SessionError } from "../../engine/session.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import type { BaseModel } from "../setup/base-model.ts"
import type { PromptBatch } from "../setup/prompts.ts"
import { cpsLogProbOf, noiseOf, ratioNormOf, type RlConfig } from "./config.ts"
import type { RlState } from "./state.ts"

export interface Trajectories {
  readonly rollout: Rollout
  readonly prompts: PromptBatch
  readonly steps: ReadonlyArray<StepRecord>
  readonly process: Process
  /** Steps a policy loss may use: stochastic (s > 0). */
  readonly trainable: ReadonlyArray<number>
}

/**
 * The time grid of a process: a (shifted) uniform σ grid for flows; leading or trailing DDIM
 * timesteps for discrete VP (§1.1).
 */
export const gridOf = (process: Process, steps: number, shift: number, spacing: GridSpacing): Array<number> =>
  process.kind === "rf"
    ? shiftGrid(uniformGrid(steps), shift)
    : spacing === "leading"
    ? leadingGrid(steps)
    : trailingGrid(steps)

export const currentParams = (state: RlState | null, base: BaseModel): ParamValues => state?.params ?? base.params

/** The weights a rollout samples with: DiffusionNFT's old policy where it keeps one, else the current weights. */
export const samplingParams = (state: RlState | null, base: BaseModel): ParamValues =>
  state?.old ?? currentParams(state, base)

/**
 * rollout: the current policy (the iteration state's weights, or the base model before the first
 * update) sampled with the training sampler over the grid, one trajectory per prompt row, every
 * transition recorded. Group members may share initial noise (DanceGRPO's `init_same_noise`, SDPO
 * pairs); a step window makes only some steps stochastic (MixGRPO).
 */
/** What the rollout reads of a pipeline's config. */
export type RolloutConfig = Pick<
  RlConfig,
  "sampler" | "eta" | "noiseLevel" | "steps" | "shift" | "spacing" | "cfg" | "threads" | "guard"
>

export const rollout = <C extends RolloutConfig>(variant: {
  readonly sharedNoise: boolean
  /** MixGRPO's stochastic window [from, to) of an iteration (RlVariant's). */
  readonly window?: (config: C, iteration: number) => readonly [number, number]
  /** Roll out with the ODE whatever the config's sampler (deterministic adjoint matching). */
  readonly deterministic?: boolean
  /** Precise's recipe (its CPS stores the Gaussian log-prob, `cpsLogProbOf`). */
  readonly rationorm?: boolean
}) =>
  Node.make({
    name: "rollout",
    doc: "trajectories of the current policy with the training sampler (every transition recorded)",
    inputs: {
      state: Port.of<RlState | null>(),
      base: Port.of<BaseModel>(),
      prompts: Port.of<PromptBatch>(),
      config: Port.of<C>(),
      iteration: Port.of<number>()
    },
    run: ({ state, base, prompts, config, iteration }) =>
      Effect.gen(function*() {
        const rng = yield* Rng
        const window = variant.window?.(config, iteration)
        return yield* Node.promise([SamplerError, SessionError, GraphError], async () => {
          const policy = await networkPolicy({
            ...base,
            params: samplingParams(state, base),
            cfg: config.cfg,
            threads: config.threads,
            weightsAsInputs: true
          })
          const r = await sampleChains({
            policy,
            sampler: variant.deterministic === true
              ? ode
              : samplerOf(config.sampler, cpsLogProbOf(ratioNormOf(variant, config))),
            noise: variant.deterministic === true ? 0 : noiseOf(config),
            grid: gridOf(base.process, config.steps, config.shift, config.spacing ?? "leading"),
            chains: prompts.prompt.length,
            condition: base.net.classes > 0 ? prompts.condition : undefined,
            record: true,
            stochastic: window === undefined ? undefined : (k: number) => k >= window[0] && k < window[1],
            initStream: (j) =>
              rng.stream("init", variant.sharedNoise ? `group${prompts.groupId[j]}` : `trajectory${j}`),
            stepStream: (j) => rng.stream("step", j)
          })
          await policy.release()
          const out: Trajectories = {
            rollout: r,
            prompts,
            steps: r.steps,
            process: base.process,
            trainable: r.steps.filter((s) => s.s > 0).map((s) => s.step)
          }
          return out
        })
      }),
    metrics: (t) => ({ trainable_steps: t.trainable.length })
  })
