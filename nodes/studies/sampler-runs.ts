/**
 * samplerRuns: rollouts of an analytic target (exact posterior mean, no training) for each
 * (sampler, step count) a sampler check asks for. One run records its whole trajectories; a sweep
 * keeps only final samples, since every step of every sweep point would be millions of rows.
 */
import { Effect } from "effect"
import { uniformGrid } from "../../diffusion/grids.ts"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { type Rollout, rollout } from "../../diffusion/rollout.ts"
import {
  type LogProbConvention,
  SAMPLER_NAMES,
  SamplerError,
  type SamplerName,
  samplerOf,
  SAMPLERS
} from "../../diffusion/samplers.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { doubleRing } from "../../models/analytic.ts"

export const SWEEP_STEPS = [6, 10, 20, 50] as const

export interface SamplerCheckRequest {
  readonly target: "double-ring"
  readonly sampler: SamplerName | "all"
  readonly noiseLevel: number
  readonly steps: number
  readonly chains: number
  readonly cpsLogProb: LogProbConvention
}

export interface SamplerRun {
  readonly sampler: SamplerName
  readonly noise: number
  readonly steps: number
  readonly rollout: Rollout
}
export type SamplerRuns = ReadonlyArray<SamplerRun>

/** The (sampler, noise, steps) points of a request: one, or every sampler × SWEEP_STEPS at its reference level. */
export const samplerPoints = (req: SamplerCheckRequest) =>
  req.sampler === "all"
    ? SAMPLER_NAMES.flatMap((sampler) =>
      SWEEP_STEPS.map((steps) => ({ sampler, noise: SAMPLERS[sampler].reference, steps }))
    )
    : [{ sampler: req.sampler, noise: req.noiseLevel, steps: req.steps }]

export const samplerRuns = Node.make({
  name: "runs",
  doc: "rollouts of the analytic double ring (§7.4) with each requested sampler and step count",
  inputs: { config: Port.of<SamplerCheckRequest>() },
  run: ({ config }) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      // §7.4: rectified flow, uniform grid linspace(1, 0, N + 1) without shift, exact velocity.
      const policy = doubleRing(rectifiedFlow, "velocity")
      const sweep = config.sampler === "all"
      const runs: Array<SamplerRun> = []
      for (const point of samplerPoints(config)) {
        const r = yield* Node.promise([SamplerError], () =>
          rollout({
            policy,
            sampler: samplerOf(point.sampler, config.cpsLogProb),
            noise: point.noise,
            grid: uniformGrid(point.steps),
            chains: config.chains,
            record: !sweep,
            // The same initial noise for every sampler and step count: common random numbers.
            initStream: (j) => rng.stream("init", j),
            stepStream: (j) => rng.stream("step", point.sampler, point.steps, j)
          }))
        runs.push({ ...point, rollout: r })
      }
      return runs as SamplerRuns
    })
})
