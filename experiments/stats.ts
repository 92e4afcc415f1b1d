import jstat from "jstat"

const { jStat } = jstat

/**
 * Across-seed statistics of an experiment: per-arm means and standard errors, paired differences
 * between arms (runs with the same seed share prompts and noise, so their difference has its own,
 * usually much smaller, error), and the verdict of a claim from them.
 */

export interface Summary {
  readonly mean: number
  /** Standard error of the mean (sample std / √n); NaN for n < 2. */
  readonly se: number
  readonly n: number
}

export const summarize = (values: ReadonlyArray<number>): Summary => {
  const n = values.length
  const mean = values.reduce((a, b) => a + b, 0) / n
  const variance = n < 2 ? Number.NaN : values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)
  return { mean, se: Math.sqrt(variance / n), n }
}

/** Values of one (metric, iteration) by seed. */
export type BySeed = ReadonlyMap<number, number>

/** The paired difference a − b over the seeds both have, with the unpaired standard error beside it. */
export const pairedDifference = (a: BySeed, b: BySeed): Summary & { readonly seUnpaired: number } => {
  const seeds = [...a.keys()].filter((s) => b.has(s))
  const d = summarize(seeds.map((s) => a.get(s)! - b.get(s)!))
  const [sa, sb] = [summarize([...a.values()]), summarize([...b.values()])]
  return { ...d, seUnpaired: Math.sqrt(sa.se ** 2 + sb.se ** 2) }
}

export type Verdict =
  | "supported"
  | "contradicted"
  | "inconclusive at this budget"
  | "too few seeds"
  | "too short a span"

/** Fewer seeds give a t test with one degree of freedom or none: no verdict is drawn from them. */
export const MIN_SEEDS = 3

/** The confidence verdicts are drawn at unless an experiment names its own. */
export const DEFAULT_CONFIDENCE = 0.95

/** A two-sided one-sample t test of "the paired effect is 0" across seeds: t, its df and p-value. */
export interface TTest {
  readonly t: number
  readonly df: number
  readonly p: number
}

export const tTest = (effect: Summary): TTest => {
  const df = effect.n - 1
  // A difference with no spread at all: exactly zero is no evidence, anything else is certain.
  const t = effect.se > 0 ? effect.mean / effect.se : effect.mean === 0 ? 0 : Math.sign(effect.mean) * Infinity
  const p = df < 1 || !Number.isFinite(effect.se) ? Number.NaN : 2 * (1 - jStat.studentt.cdf(Math.abs(t), df))
  return { t, df, p: Number.isFinite(t) ? p : 0 }
}

/** Student's t quantile: the paired effect must exceed `critical · se` at `confidence` (two-sided). */
export const critical = (df: number, confidence: number): number => jStat.studentt.inv(1 - (1 - confidence) / 2, df)

/**
 * A claimed direction tested on an effect (the paired difference across seeds): a two-sided t test at
 * `confidence` with n − 1 degrees of freedom; significant in the claimed direction is supported, against
 * it contradicted, else inconclusive. Fewer than 3 seeds: "too few seeds", never a verdict.
 */
export const verdictOf = (effect: Summary, direction: ">" | "<", confidence = DEFAULT_CONFIDENCE): Verdict => {
  if (effect.n < MIN_SEEDS || !Number.isFinite(effect.se)) return "too few seeds"
  const { t, p } = tTest(effect)
  return directed(p < 1 - confidence, direction === ">" ? t : -t)
}

const directed = (significant: boolean, signedT: number): Verdict =>
  !significant ? "inconclusive at this budget" : signedT > 0 ? "supported" : "contradicted"

/**
 * Holm's step-down correction over an experiment's claims (family-wise error ≤ 1 − confidence): the
 * verdict of each claim when every claim of the experiment counts. A claim with too few seeds stays so.
 */
export const holmVerdicts = (
  tests: ReadonlyArray<{ readonly effect: Summary; readonly direction: ">" | "<" }>,
  confidence = DEFAULT_CONFIDENCE
): Array<Verdict> => {
  const alpha = 1 - confidence
  const p = tests.map(({ effect }) =>
    effect.n < MIN_SEEDS || !Number.isFinite(effect.se) ? Number.NaN : tTest(effect).p
  )
  const order = p.map((_, i) => i).filter((i) => !Number.isNaN(p[i])).sort((a, b) => p[a] - p[b])
  const rejected = new Set<number>()
  for (let k = 0; k < order.length && p[order[k]] < alpha / (order.length - k); k++) rejected.add(order[k])
  return tests.map(({ effect, direction }, i) => {
    if (Number.isNaN(p[i])) return "too few seeds"
    const { t } = tTest(effect)
    return directed(rejected.has(i), direction === ">" ? t : -t)
  })
}

/** A claim as judged: its own test's verdict, the verdict under Holm's correction, the test itself. */
export interface Judged {
  readonly verdict: Verdict
  readonly holm: Verdict
  readonly test: TTest
}

/**
 * Every claim of an experiment judged at `confidence`; a claim over too short a span is not judged (nor
 * counted in Holm's family), a claim without data is undefined.
 */
export const judgeClaims = (
  claims: ReadonlyArray<
    { readonly effect: Summary; readonly direction: ">" | "<"; readonly short?: true } | undefined
  >,
  confidence = DEFAULT_CONFIDENCE
): Array<Judged | undefined> => {
  const family = claims.flatMap((c, i) => (c === undefined || c.short === true ? [] : [{ ...c, i }]))
  const holm = holmVerdicts(family, confidence)
  return claims.map((c, i) => {
    if (c === undefined) return undefined
    const test = tTest(c.effect)
    if (c.short === true) return { verdict: "too short a span", holm: "too short a span", test }
    return {
      verdict: verdictOf(c.effect, c.direction, confidence),
      holm: holm[family.findIndex((f) => f.i === i)],
      test
    }
  })
}
