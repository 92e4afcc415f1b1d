/**
 * What an evaluation on the `tilt` task measures beside the reward (docs/algorithms.md §13): the
 * target's reward (the real test digits of T under the same classifier: the KL-regularised optimum at
 * λ = 1), the normalised reward, the judge's hit rate (its digit is in T), the Fréchet distance to the
 * real digits of T and the diversity relative to theirs.
 */
import type * as arrow from "apache-arrow"
import { splitOf } from "../../data/split.ts"
import type { EngineSession } from "../../engine/session.ts"
import {
  diversity,
  featureSession,
  featuresOf,
  type FeatureStats,
  featureStats,
  frechetDistance
} from "../../models/quality.ts"
import { classifierLogProbs, logTargetProb } from "../../rewards/target.ts"
import { meanStd } from "../rl/advantages.ts"
import type { RewardClassifier } from "../setup/reward-classifier.ts"

export interface TiltReference {
  readonly target: ReadonlyArray<number>
  readonly features: EngineSession
  readonly judge: EngineSession
  /** Feature statistics of the real test digits of T. */
  readonly real: FeatureStats
  /** Diversity (mean pairwise feature distance) of the real test digits of T. */
  readonly realDiversity: number
  /** log p(T | x) over the real test digits of T: mean, its standard error and how many digits. */
  readonly targetReward: { readonly mean: number; readonly se: number; readonly count: number }
  readonly dim: number
  readonly classes: number
}

/** Real digits used for the diversity reference: enough pairs for a stable mean, O(n²) kept small. */
const DIVERSITY_ROWS = 1000

/** The real digits' statistics per classifier and target: computed once per process, as quality.ts's. */
const realStats = new WeakMap<object, Map<string, Pick<TiltReference, "real" | "realDiversity" | "targetReward">>>()

/** The real test digits of T, their features, diversity and reward (the statistics once per classifier). */
export const tiltReference = async (
  data: arrow.Table,
  classifier: Pick<RewardClassifier, "net" | "params" | "session">,
  judge: Pick<RewardClassifier, "session">,
  target: ReadonlyArray<number>,
  threads: number
): Promise<TiltReference> => {
  const test = splitOf(data, "test")
  const features = await featureSession(classifier.net, classifier.params, threads)
  const classes = classifier.net.classes
  const byTarget = realStats.get(classifier) ?? new Map()
  realStats.set(classifier, byTarget)
  let stats = byTarget.get(target.join(","))
  if (stats === undefined) {
    const rows = Array.from({ length: test.count }, (_, i) => i).filter((i) => target.includes(test.label[i]))
    const pixels = new Float32Array(rows.length * test.dim)
    rows.forEach((r, j) => pixels.set(test.x.subarray(r * test.dim, (r + 1) * test.dim), j * test.dim))
    const f = await featuresOf(features, pixels, rows.length, test.dim)
    const logp = await classifierLogProbs(classifier.session, pixels, rows.length, test.dim)
    const rewards = Float64Array.from({ length: rows.length }, (_, i) => logTargetProb(logp, i, classes, target))
    const { mean, std } = meanStd(rewards, true)
    const sub = Array.from({ length: Math.min(DIVERSITY_ROWS, rows.length) }, (_, i) => i)
    stats = {
      real: featureStats(f),
      realDiversity: diversity(f, [sub]),
      targetReward: { mean, se: std / Math.sqrt(rows.length), count: rows.length }
    }
    byTarget.set(target.join(","), stats)
  }
  return { target, features, judge: judge.session, ...stats, dim: test.dim, classes }
}

/** FD to the real digits of T, diversity relative to theirs, and the judge's hit rate, of `count` samples. */
export const tiltQualityOf = async (ref: TiltReference, pixels: Float32Array, count: number) => {
  const f = await featuresOf(ref.features, pixels, count, ref.dim)
  const judged = await classifierLogProbs(ref.judge, pixels, count, ref.dim)
  let hits = 0
  for (let i = 0; i < count; i++) {
    let best = 0
    for (let k = 1; k < ref.classes; k++) if (judged[i * ref.classes + k] > judged[i * ref.classes + best]) best = k
    if (ref.target.includes(best)) hits++
  }
  const all = Array.from({ length: count }, (_, i) => i)
  return {
    fd: frechetDistance(featureStats(f), ref.real),
    diversity: diversity(f, [all]) / ref.realDiversity,
    hit: hits / count
  }
}

/** The tilt metrics at one step count: target reward, normalised reward (± s.e.), and both models' quality. */
export const tiltMetrics = async (
  ref: TiltReference,
  steps: number,
  pixels: { readonly tuned: Float32Array; readonly base: Float32Array },
  count: number,
  improvement: { readonly mean: number; readonly se: number },
  baseReward: number
): Promise<Record<string, number>> => {
  // (r − r_base)/(r_target − r_base): 0 at the base, 1 at the optimum's reward (the base's mean is a
  // constant of the run's evaluation noise, so the paired s.e. of r − r_base scales through).
  const span = ref.targetReward.mean - baseReward
  const metrics: Record<string, number> = {
    [`eval.target_reward`]: ref.targetReward.mean,
    [`eval.target_reward.se`]: ref.targetReward.se,
    [`eval.normalised.s${steps}`]: improvement.mean / span,
    [`eval.normalised.s${steps}.se`]: improvement.se / Math.abs(span)
  }
  for (const [suffix, x] of [["", pixels.tuned], ["_base", pixels.base]] as const) {
    const q = await tiltQualityOf(ref, x, count)
    metrics[`eval.hit${suffix}.s${steps}`] = q.hit
    metrics[`eval.fd_target${suffix}.s${steps}`] = q.fd
    metrics[`eval.diversity_target${suffix}.s${steps}`] = q.diversity
  }
  return metrics
}

export const releaseTilt = (ref: TiltReference) => ref.features.release()

/**
 * E_{p*}[r] for p* ∝ p_base·exp(λ r), self-normalised over base samples with weights exp(λ r_i), and the
 * weights' effective sample size (Σw)²/Σw²: the target's reward where λ ≠ 1 leaves it unknown in closed
 * form (§13.1). Few effective samples mean the estimate rests on the base's best few.
 */
export const tiltedReward = (baseRewards: ArrayLike<number>, lambda: number): { mean: number; ess: number } => {
  let top = -Infinity
  for (let i = 0; i < baseRewards.length; i++) top = Math.max(top, lambda * baseRewards[i])
  let [sum, sumSq, weighted] = [0, 0, 0]
  for (let i = 0; i < baseRewards.length; i++) {
    const w = Math.exp(lambda * baseRewards[i] - top)
    sum += w
    sumSq += w * w
    weighted += w * baseRewards[i]
  }
  return { mean: weighted / sum, ess: (sum * sum) / sumSq }
}

/**
 * The gold reward of an over-optimisation study (§13.4): the held-out judge scoring the task the proxy
 * is trained for — log p_judge(T | x) on tilt, log p_judge(prompted digit | x) otherwise — for the tuned
 * and the base ODE samples, with the paired improvement and its s.e.
 */
export const goldMetrics = async (
  judge: EngineSession,
  steps: number,
  pixels: { readonly tuned: Float32Array; readonly base: Float32Array },
  condition: Int32Array,
  target: ReadonlyArray<number> | undefined
): Promise<Record<string, number>> => {
  const count = condition.length
  const score = async (x: Float32Array) => {
    const logp = await classifierLogProbs(judge, x, count, x.length / count)
    const classes = logp.length / count
    return Float64Array.from(
      { length: count },
      (_, i) => target === undefined ? logp[i * classes + condition[i]] : logTargetProb(logp, i, classes, target)
    )
  }
  const [tuned, base] = [await score(pixels.tuned), await score(pixels.base)]
  const gain = meanStd(tuned.map((v, i) => v - base[i]), true)
  // Collapse watch: the share of fine-tuned samples the gold scores below the base's median sample.
  const sorted = Array.from(base).sort((a, b) => a - b)
  const median = count % 2 === 1 ? sorted[(count - 1) / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2
  return {
    [`eval.gold.s${steps}`]: meanStd(tuned, true).mean,
    [`eval.gold_base.s${steps}`]: meanStd(base, true).mean,
    [`eval.gold_improvement.s${steps}`]: gain.mean,
    [`eval.gold_improvement.s${steps}.se`]: gain.std / Math.sqrt(count),
    [`eval.gold_below_base_median.s${steps}`]: tuned.filter((v) => v < median).length / count
  }
}
