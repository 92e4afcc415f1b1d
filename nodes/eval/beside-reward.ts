/**
 * What an evaluation measures beside the reward at one step count (docs/algorithms.md §11.3, §13): sample
 * quality (MNIST), the testbeds' distance to their known optimum (tilt, gmm25), the gold against a proxy
 * (§13.4) and adjoint matching's target reward at its λ.
 */
import { latentsToPixels } from "../../data/mnist.ts"
import type { EngineSession } from "../../engine/session.ts"
import { meanStd } from "../rl/advantages.ts"
import { type RlConfig, targetOf } from "../rl/config.ts"
import { gmm25Metrics } from "./gmm25.ts"
import { qualityOf, type QualityReference } from "./quality.ts"
import { goldMetrics, tiltedReward, tiltMetrics, type TiltReference } from "./tilt.ts"

/** What the measures read of the config: the data set and task, and the adjoint pipelines' λ. */
type BesideConfig =
  & Pick<RlConfig, "dataset" | "task" | "target">
  & { readonly lambda?: number | undefined; readonly adjointSteps?: number | undefined }

/**
 * What an evaluation measures beside the reward at one step count: sample quality (MNIST), the testbeds'
 * distance to their known optimum (tilt, gmm25; §13) and adjoint matching's target reward at its λ.
 */
export const besideReward = async (opts: {
  readonly steps: number
  readonly odeSamples: { readonly tuned: Float32Array; readonly base: Float32Array }
  readonly baseOde: Float64Array
  readonly imp: { readonly mean: number; readonly se: number }
  readonly quality: QualityReference | undefined
  readonly tilt: TiltReference | undefined
  /** The judge, when the reward is the proxy's: the gold reward beside it (§13.4). */
  readonly gold: EngineSession | undefined
  readonly set: { readonly count: number; readonly condition: Int32Array }
  readonly config: BesideConfig
}): Promise<Record<string, number>> => {
  const { steps, odeSamples, baseOde, imp, set, config } = opts
  const baseMean = meanStd(baseOde, true).mean
  // The pixels of the ODE samples, mapped once for whichever measures need them (tilt, gold).
  let mapped: { readonly tuned: Float32Array; readonly base: Float32Array } | undefined
  const pixels = () => (mapped ??= { tuned: latentsToPixels(odeSamples.tuned), base: latentsToPixels(odeSamples.base) })
  // Adjoint matching's target p_base·exp(λ r): its reward by importance weights on the base's samples.
  // (Only the adjoint pipelines, which have `adjointSteps`: SDPO's `lambda` is its temporal weight.)
  const tilted = config.adjointSteps === undefined || config.lambda === undefined
    ? undefined
    : tiltedReward(baseOde, config.lambda)
  return {
    ...(opts.quality === undefined ? {} : await qualityAt(opts.quality, steps, odeSamples, set)),
    ...(opts.tilt === undefined ? {} : await tiltMetrics(opts.tilt, steps, pixels(), set.count, imp, baseMean)),
    ...(config.dataset === "gmm25" ? gmm25Metrics(steps, odeSamples, set.count, imp, baseMean) : {}),
    ...(opts.gold === undefined
      ? {}
      : await goldMetrics(
        opts.gold,
        steps,
        pixels(),
        set.condition,
        config.task === "tilt" ? targetOf(config) : undefined
      )),
    ...(tilted === undefined
      ? {}
      : { [`eval.target_reward_lambda.s${steps}`]: tilted.mean, [`eval.target_ess.s${steps}`]: tilted.ess })
  }
}

/** FD, class FD, diversity and judge accuracy of the tuned and the base ODE samples (§11.3). */
const qualityAt = async (
  ref: QualityReference,
  steps: number,
  samples: { readonly tuned: Float32Array; readonly base: Float32Array },
  set: { readonly count: number; readonly condition: Int32Array }
) => {
  const metrics: Record<string, number> = {}
  for (const [suffix, latents] of [["", samples.tuned], ["_base", samples.base]] as const) {
    const q = await qualityOf(ref, latentsToPixels(latents), set.condition, set.count)
    metrics[`eval.fd${suffix}.s${steps}`] = q.fd
    metrics[`eval.fd_class${suffix}.s${steps}`] = q.fdClass
    metrics[`eval.diversity${suffix}.s${steps}`] = q.diversity
    metrics[`eval.judge${suffix}.s${steps}`] = q.judge
  }
  return metrics
}
