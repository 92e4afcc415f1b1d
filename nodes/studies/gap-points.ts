/**
 * gapPoints: the SDE − ODE reward gap of the gDDIM λ-sampler on Gaussian data with the exact score
 * and reward r(x) = −x²/2 (docs/algorithms.md §3.5, §11), three ways for each horizon T:
 *  - gap_exact: the closed form of the continuous sampler;
 *  - gap_discrete: exact moments of the discretized sampler at the configured step count, which
 *    separates discretization error from Monte-Carlo error;
 *  - gap_sampled ± se: rollouts of the SDE and the ODE from the same initial noise (common random
 *    numbers), the per-chain reward differences averaged;
 * next to the brief's rate: (2T)⁻¹ for VE, e^{−T²/2} for VP with β(t) = t.
 */
import { Effect } from "effect"
import { gapBound, gapExact, quadraticReward, vpAlphaBar } from "../../diffusion/gaussian-theory.ts"
import { gaussianSamplerMoments } from "../../diffusion/moments.ts"
import { type Process, veBrownian, vpContinuous } from "../../diffusion/process.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { SamplerError } from "../../diffusion/samplers.ts"
import { gddim, ode } from "../../diffusion/samplers.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { gaussianData } from "../../models/analytic.ts"

export interface TheoryGapRequest {
  readonly process: "ve" | "vp"
  readonly T: number
  readonly lambda: number
  readonly s0: number
  readonly mu0: number
  readonly steps: number
  readonly chains: number
  readonly sweepT: ReadonlyArray<number>
}

export interface GapPoint {
  readonly T: number
  readonly gapExact: number
  readonly gapDiscrete: number
  readonly gapSampled: number
  readonly gapSampledSe: number
  readonly bound: number
}

const processOf = (kind: "ve" | "vp"): Process => (kind === "ve" ? veBrownian : vpContinuous("vp-beta-t", vpAlphaBar))

/** VE steps uniformly in σ = √t (uniform in t wastes steps at large noise); VP uniformly in t. */
export const theoryGrid = (kind: "ve" | "vp", T: number, steps: number): Array<number> =>
  Array.from(
    { length: steps + 1 },
    (_, k) => (k === steps ? 0 : kind === "ve" ? T * (1 - k / steps) ** 2 : T * (1 - k / steps))
  )

export const gapPoints = Node.make({
  name: "points",
  doc: "SDE − ODE reward gap of gDDIM-λ on Gaussian data: closed form, exact discretized, sampled",
  inputs: { config: Port.of<TheoryGapRequest>() },
  run: ({ config }) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const process = processOf(config.process)
      const policy = gaussianData({ mean: config.mu0, std: config.s0, dim: 1, process, parameterization: "epsilon" })
      const points: Array<GapPoint> = []
      // The configured T first (its values are the run's metrics), then the sweep in increasing order.
      for (const T of [config.T, ...[...new Set(config.sweepT)].filter((t) => t !== config.T).sort((a, b) => a - b)]) {
        const grid = theoryGrid(config.process, T, config.steps)
        const theory = { process: config.process, T, mu0: config.mu0, s0: config.s0 }
        const moments = (sampler: typeof ode, noise: number) =>
          gaussianSamplerMoments({
            process,
            parameterization: "epsilon",
            sampler,
            noise,
            grid,
            mean: config.mu0,
            std: config.s0
          })
        const run = (sampler: typeof ode, noise: number) =>
          Node.promise([SamplerError], () =>
            rollout({
              policy,
              sampler,
              noise,
              grid,
              chains: config.chains,
              initStream: (j) => rng.stream("init", T, j),
              stepStream: (j) => rng.stream("step", T, j)
            }))
        const sde = yield* run(gddim, config.lambda)
        const odeRun = yield* run(ode, 0)
        let sum = 0
        let sq = 0
        for (let j = 0; j < config.chains; j++) {
          const diff = -(sde.final[j] ** 2) / 2 + odeRun.final[j] ** 2 / 2
          sum += diff
          sq += diff * diff
        }
        const mean = sum / config.chains
        const variance = config.chains > 1 ? (sq - config.chains * mean * mean) / (config.chains - 1) : 0
        points.push({
          T,
          gapExact: gapExact(theory, config.lambda),
          gapDiscrete: quadraticReward(moments(gddim, config.lambda)) - quadraticReward(moments(ode, 0)),
          gapSampled: mean,
          gapSampledSe: Math.sqrt(Math.max(variance, 0) / config.chains),
          bound: gapBound(config.process, T)
        })
      }
      return points as ReadonlyArray<GapPoint>
    })
})
