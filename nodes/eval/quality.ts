/**
 * Quality measures of MNIST samples beside the reward (docs/algorithms.md §11.3): the Fréchet
 * distance to the held-out real digits in the reward classifier's features (overall and the mean of
 * the per-class distances), within-prompt diversity, and the judge's class accuracy.
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
  frechetDistance,
  rowsOf
} from "../../models/quality.ts"
import { accuracy } from "../../training/classifier.ts"
import type { RewardClassifier } from "../setup/reward-classifier.ts"

/** What quality is measured against: the classifier's features of the real test digits, and the judge. */
export interface QualityReference {
  readonly features: EngineSession
  readonly judge: EngineSession
  readonly real: FeatureStats
  readonly realByClass: ReadonlyArray<FeatureStats>
  readonly dim: number
  readonly classes: number
}

const rowsByClass = (label: ArrayLike<number>, classes: number) => {
  const rows: Array<Array<number>> = Array.from({ length: classes }, () => [])
  for (let i = 0; i < label.length; i++) rows[label[i]].push(i)
  return rows
}

/** The real digits' statistics per classifier: computed once per process (Σ of 2,000 × 512 features). */
const realStats = new WeakMap<RewardClassifier, Pick<QualityReference, "real" | "realByClass">>()

export const qualityReference = async (
  data: arrow.Table,
  classifier: RewardClassifier,
  judge: RewardClassifier,
  threads: number
): Promise<QualityReference> => {
  const test = splitOf(data, "test")
  const features = await featureSession(classifier.net, classifier.params, threads)
  let stats = realStats.get(classifier)
  if (stats === undefined) {
    const real = await featuresOf(features, test.x, test.count, test.dim)
    const realByClass = rowsByClass(test.label, test.classes).map((rows) => featureStats(rowsOf(real, rows)))
    stats = { real: featureStats(real), realByClass }
    realStats.set(classifier, stats)
  }
  return { features, judge: judge.session, ...stats, dim: test.dim, classes: test.classes }
}

export interface Quality {
  readonly fd: number
  /** Mean over the classes present of the class-conditional Fréchet distance. */
  readonly fdClass: number
  readonly diversity: number
  readonly judge: number
}

/** Quality of `count` samples (pixels in [0, 1]) generated for the classes in `condition`. */
export const qualityOf = async (
  ref: QualityReference,
  pixels: Float32Array,
  condition: Int32Array,
  count: number
): Promise<Quality> => {
  const f = await featuresOf(ref.features, pixels, count, ref.dim)
  const groups = rowsByClass(condition, ref.classes)
  const perClass = groups.flatMap((rows, k) =>
    rows.length < 2 ? [] : [frechetDistance(featureStats(rowsOf(f, rows)), ref.realByClass[k])]
  )
  return {
    fd: frechetDistance(featureStats(f), ref.real),
    fdClass: perClass.reduce((a, b) => a + b, 0) / perClass.length,
    diversity: diversity(f, groups),
    judge: await accuracy(
      ref.judge,
      { x: pixels, label: condition, count, side: Math.round(Math.sqrt(ref.dim)) },
      ref.dim,
      ref.classes
    )
  }
}

export const releaseQuality = (ref: QualityReference) => ref.features.release()
