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

export type Verdict = "supported" | "contradicted" | "inconclusive at this budget"

/**
 * A claimed direction tested on an effect: supported beyond 2 standard errors in the claimed
 * direction, contradicted beyond 2 against it, inconclusive otherwise (and with no error estimate).
 */
export const verdictOf = (effect: Summary, direction: ">" | "<"): Verdict => {
  const signed = direction === ">" ? effect.mean : -effect.mean
  if (!Number.isFinite(effect.se)) return "inconclusive at this budget"
  return signed > 2 * effect.se ? "supported" : signed < -2 * effect.se ? "contradicted" : "inconclusive at this budget"
}
