/**
 * A learning curve reduced to one number per seed, so two arms can be compared pairwise across seeds:
 * its area (the mean level over the run, trapezoids between evaluations), its value at a compute-seconds
 * budget (linear between evaluations) — "learns faster" claims, where the last evaluation alone says
 * nothing about speed — its value where another metric first reaches a level both arms reach ("gold at
 * equal proxy reward", "gold at equal KL"), or the seconds it takes to reach a level.
 */
import type { BySeed } from "./stats.ts"

/** iteration → seed → value, as experiments/compare.ts collects a metric. */
export type Curve = ReadonlyMap<number, BySeed>

/** The (x, y) points of one seed's curve at the given iterations, in iteration order. */
const pointsOf = (curve: Curve, seed: number, iterations: ReadonlyArray<number>, x: (i: number) => number) =>
  iterations.flatMap((i) => {
    const y = curve.get(i)?.get(seed)
    return y === undefined ? [] : [{ x: x(i), y }]
  })

/**
 * Per seed, the area under the curve between its first and last evaluation in `iterations`, divided by
 * that span: the curve's mean level (a single evaluation is its own level).
 */
export const meanLevel = (curve: Curve, iterations: ReadonlyArray<number>): Map<number, number> => {
  const seeds = new Set([...curve.values()].flatMap((m) => [...m.keys()]))
  const out = new Map<number, number>()
  for (const seed of seeds) {
    const p = pointsOf(curve, seed, iterations, (i) => i)
    if (p.length === 0) continue
    let area = 0
    for (let k = 1; k < p.length; k++) area += ((p[k].y + p[k - 1].y) / 2) * (p[k].x - p[k - 1].x)
    out.set(seed, p.length === 1 ? p[0].y : area / (p[p.length - 1].x - p[0].x))
  }
  return out
}

/** y at x on the polyline through `p` (x ascending), held flat outside its ends. */
export const interpolate = (p: ReadonlyArray<{ x: number; y: number }>, x: number): number => {
  if (x <= p[0].x) return p[0].y
  for (let k = 1; k < p.length; k++) {
    if (x <= p[k].x) return p[k - 1].y + ((p[k].y - p[k - 1].y) * (x - p[k - 1].x)) / (p[k].x - p[k - 1].x)
  }
  return p[p.length - 1].y
}

/**
 * Two arms' curves at equal compute seconds, per seed: each arm's value at the seconds the cheaper of
 * the two had spent by its last evaluation (so neither is extrapolated), and that budget.
 */
export const atEqualSeconds = (
  a: { readonly curve: Curve; readonly seconds: Curve },
  b: { readonly curve: Curve; readonly seconds: Curve }
): { a: Map<number, number>; b: Map<number, number>; budget: Map<number, number> } => {
  const out = { a: new Map<number, number>(), b: new Map<number, number>(), budget: new Map<number, number>() }
  const seeds = [...new Set([...a.curve.values()].flatMap((m) => [...m.keys()]))]
  for (const seed of seeds) {
    const [pa, pb] = [a, b].map((arm) =>
      pointsOf(
        arm.curve,
        seed,
        [...arm.curve.keys()].sort((x, y) => x - y),
        (i) => arm.seconds.get(i)?.get(seed) ?? NaN
      )
        .filter((q) => Number.isFinite(q.x))
    )
    if (pa.length === 0 || pb.length === 0) continue
    const budget = Math.min(pa[pa.length - 1].x, pb[pb.length - 1].x)
    out.a.set(seed, interpolate(pa, budget))
    out.b.set(seed, interpolate(pb, budget))
    out.budget.set(seed, budget)
  }
  return out
}

/**
 * Along a polyline in iteration order, y where x first reaches `level` (linear within the crossing
 * segment); undefined when it never does.
 */
export const firstReach = (p: ReadonlyArray<{ x: number; y: number }>, level: number): number | undefined => {
  if (p.length > 0 && p[0].x >= level) return p[0].y
  for (let k = 1; k < p.length; k++) {
    if (p[k].x >= level) return p[k - 1].y + ((p[k].y - p[k - 1].y) * (level - p[k - 1].x)) / (p[k].x - p[k - 1].x)
  }
  return undefined
}

/** A seed's (x, y) points of two curves over the same iterations, in iteration order. */
const paired = (x: Curve, y: Curve, seed: number) =>
  [...x.keys()].sort((a, b) => a - b).flatMap((i) => {
    const [xv, yv] = [x.get(i)?.get(seed), y.get(i)?.get(seed)]
    return xv === undefined || yv === undefined || !Number.isFinite(xv) ? [] : [{ x: xv, y: yv }]
  })

/**
 * Two arms at a common level of a curve x, per seed: each arm's y where its x first reaches the level.
 * `level` "max": the smaller of the two arms' largest x (both reach it: gold at equal proxy reward or KL);
 * "last": the smaller of their last x (time to reach the level the weaker arm ends at).
 */
export const atEqualLevel = (
  a: { readonly x: Curve; readonly y: Curve },
  b: { readonly x: Curve; readonly y: Curve },
  level: "max" | "last"
): { a: Map<number, number>; b: Map<number, number>; level: Map<number, number> } => {
  const out = { a: new Map<number, number>(), b: new Map<number, number>(), level: new Map<number, number>() }
  const seeds = [...new Set([...a.x.values()].flatMap((m) => [...m.keys()]))]
  for (const seed of seeds) {
    const [pa, pb] = [paired(a.x, a.y, seed), paired(b.x, b.y, seed)]
    if (pa.length === 0 || pb.length === 0) continue
    const top = (p: typeof pa) => (level === "max" ? Math.max(...p.map((q) => q.x)) : p[p.length - 1].x)
    const at = Math.min(top(pa), top(pb))
    const [ya, yb] = [firstReach(pa, at), firstReach(pb, at)]
    if (ya === undefined || yb === undefined) continue
    out.a.set(seed, ya)
    out.b.set(seed, yb)
    out.level.set(seed, at)
  }
  return out
}
