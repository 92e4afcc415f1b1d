/**
 * `etaflow run theory-gap`: the SDE − ODE reward gap on the Gaussian model of docs/algorithms.md §3.5,
 * closed form against the sampled gDDIM sampler, next to the brief's rate, for T and a sweep of T.
 */
import { Persist } from "../kernel/node.ts"
import { Pipeline } from "../kernel/pipeline.ts"
import { gapPoints } from "../nodes/studies/gap-points.ts"
import { gapTable } from "../nodes/studies/gap-table.ts"
import { markdownTable } from "../nodes/studies/sampler-table.ts"
import { writeReport } from "../report/report.ts"
import { Setting } from "../schemas/settings.ts"

export const theoryGap = Pipeline.define({
  name: "theory-gap",
  doc: "SDE − ODE reward gap of gDDIM-λ on Gaussian data: closed form vs sampled vs the brief's bound",
  settings: {
    process: Setting.literal(
      ["ve", "vp"],
      "ve",
      "VE with σ² = t and prior N(0, T), or VP with β(t) = t and prior N(0, 1)"
    ),
    T: Setting.number(2, "time horizon of the reported metrics", { min: 1e-3 }),
    lambda: Setting.number(1, "gDDIM λ of the SDE sampler (0 is the ODE)", { min: 0 }),
    s0: Setting.number(1, "data standard deviation per coordinate", { min: 1e-6 }),
    mu0: Setting.number(0, "data mean"),
    steps: Setting.int(1000, "sampling steps of the sampled gap", { min: 1 }),
    chains: Setting.int(20_000, "chains of the sampled gap", { min: 2 }),
    sweepT: Setting.numberList([0.5, 1, 2, 4, 8], "horizons of the table (besides T)", { min: 1e-3 })
  },
  nodes: {
    points: gapPoints.from({ config: "config" }),
    table: gapTable.from({ points: "points" }).persist(Persist.once("theory-gap.parquet")),
    markdown: markdownTable.from({ table: "table" }).persist(Persist.once("theory-gap.md"))
  },
  info: (config) => ({
    time_convention: config.process === "ve" ? "VE, σ²(t) = t" : "VP, ᾱ(t) = exp(−t²/2)",
    reward: "r(x) = −x²/2",
    sampler: "gddim"
  }),
  onComplete: writeReport
})
