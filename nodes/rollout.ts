/**
 * rolloutTrajectories: the current policy (the iteration state's weights, or the base model before
 * the first update) sampled with the training sampler over the grid, one trajectory per prompt
 * row, every transition recorded. Group members may share initial noise (DanceGRPO's
 * `init_same_noise`, SDPO pairs); a step window makes only some steps stochastic (MixGRPO).
 */
import { Effect } from "effect"
import { Node, Port } from "../kernel/node.ts"
import { Rng } from "../kernel/services.ts"
import { rollout, type Rollout, type StepRecord } from "../diffusion/rollout.ts"
import { samplerOf, type SamplerName } from "../diffusion/samplers.ts"
import { leadingGrid, shiftGrid, trailingGrid, uniformGrid, type GridSpacing } from "../diffusion/grids.ts"
import { networkPolicy } from "../models/network-policy.ts"
import type { Process } from "../diffusion/process.ts"
import type { ParamValues } from "../engine/params.ts"
import type { BaseModel } from "./base-model.ts"
import type { PromptBatch } from "./prompts.ts"
import type { RlState } from "./rl-state.ts"

export interface RolloutRequest {
  readonly sampler: SamplerName
  /** The sampler's noise level (η, λ or a). */
  readonly noise: number
  readonly steps: number
  /** Static shift of a flow grid (1 = uniform). */
  readonly shift: number
  /** Timestep spacing of a discrete VP grid. */
  readonly spacing: GridSpacing
  readonly cfg: number
  /** Group members start from the same initial noise. */
  readonly sharedNoise: boolean
  /** Stochastic steps [from, to) (MixGRPO's window); the rest take the ODE step. null: all. */
  readonly window: readonly [number, number] | null
  readonly threads: number
}

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
  process.kind === "rf" ? shiftGrid(uniformGrid(steps), shift) : spacing === "leading" ? leadingGrid(steps) : trailingGrid(steps)

export const currentParams = (state: RlState | null, base: BaseModel): ParamValues => state?.params ?? base.params

export const rolloutTrajectories = Node.make({
  name: "rolloutTrajectories",
  doc: "trajectories of the current policy with the training sampler (every transition recorded)",
  inputs: { state: Port.of<RlState | null>(), base: Port.of<BaseModel>(), prompts: Port.of<PromptBatch>(), config: Port.of<RolloutRequest>() },
  run: ({ state, base, prompts, config }) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const window = config.window
      return yield* Effect.tryPromise({
        try: async () => {
          const policy = await networkPolicy({ ...base, params: currentParams(state, base), cfg: config.cfg, threads: config.threads })
          const conditional = base.net.classes > 0
          const r = await rollout({
            policy,
            sampler: samplerOf(config.sampler),
            noise: config.noise,
            grid: gridOf(base.process, config.steps, config.shift, config.spacing),
            chains: prompts.prompt.length,
            ...(conditional ? { condition: prompts.condition } : {}),
            record: true,
            ...(window === null ? {} : { stochastic: (k: number) => k >= window[0] && k < window[1] }),
            initStream: (j) => rng.stream("init", config.sharedNoise ? `group${prompts.groupId[j]}` : `trajectory${j}`),
            stepStream: (j) => rng.stream("step", j)
          })
          await policy.session.release()
          const out: Trajectories = { rollout: r, prompts, steps: r.steps, process: base.process, trainable: r.steps.filter((s) => s.s > 0).map((s) => s.step) }
          return out
        },
        catch: (e) => e
      })
    }),
  metrics: (t) => ({ trainable_steps: t.trainable.length })
})
