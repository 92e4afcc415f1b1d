/** gapTable: the reward-gap points as an Arrow table; the configured T's values are the run's metrics. */
import { Effect } from "effect"
import { Node, Port } from "../../kernel/node.ts"
import { Column, TableDef } from "../../schemas/columns.ts"
import type { GapPoint } from "./gap-points.ts"

export const TheoryGapTable = new TableDef("theory_gap", 1, {
  T: Column.float64("time horizon T"),
  gap_exact: Column.float64("closed-form gap E_λ[r] − E_0[r] of the continuous sampler, r(x) = −x²/2"),
  gap_discrete: Column.float64("exact gap of the discretized sampler at the configured steps"),
  gap_sampled: Column.float64("sampled gap, SDE and ODE from the same initial noise"),
  gap_sampled_se: Column.float64("standard error of gap_sampled"),
  bound: Column.float64("the brief's rate: (2T)⁻¹ for VE, e^{−T²/2} for VP"),
  within_bound: Column.int32("1 when |gap_exact| ≤ bound")
})

export const gapTable = Node.make({
  name: "table",
  doc: "the reward gap per horizon T, with the bound it is compared to",
  inputs: { points: Port.of<ReadonlyArray<GapPoint>>() },
  run: ({ points }) =>
    Effect.sync(() =>
      TheoryGapTable.build(points.length, {
        T: Float64Array.from(points, (p) => p.T),
        gap_exact: Float64Array.from(points, (p) => p.gapExact),
        gap_discrete: Float64Array.from(points, (p) => p.gapDiscrete),
        gap_sampled: Float64Array.from(points, (p) => p.gapSampled),
        gap_sampled_se: Float64Array.from(points, (p) => p.gapSampledSe),
        bound: Float64Array.from(points, (p) => p.bound),
        within_bound: Int32Array.from(points, (p) => (Math.abs(p.gapExact) <= p.bound ? 1 : 0))
      }, {})
    ),
  metrics: (_, { points }) => ({
    gap_exact: points[0].gapExact,
    gap_sampled: points[0].gapSampled,
    gap_sampled_se: points[0].gapSampledSe,
    gap_discrete: points[0].gapDiscrete,
    bound: points[0].bound
  })
})
