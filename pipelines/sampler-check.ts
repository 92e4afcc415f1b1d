/**
 * `etaflow run sampler-check`: every sampler on the analytic double ring of docs/algorithms.md §7.4,
 * where the right answer is known (outer-ring mass 0.5, samples on the rings).
 */
import { SAMPLER_NAMES } from "../diffusion/samplers.ts"
import { Persist } from "../kernel/node.ts"
import { Pipeline } from "../kernel/pipeline.ts"
import { trajectories } from "../nodes/rl/trajectory-table.ts"
import { samplerRuns } from "../nodes/studies/sampler-runs.ts"
import { markdownTable, samplerTable } from "../nodes/studies/sampler-table.ts"
import { writeReport } from "../report/report.ts"
import { Setting } from "../schemas/settings.ts"

export const samplerCheck = Pipeline.define({
  name: "sampler-check",
  doc: "samplers on the analytic double ring: outer-ring mass (target 0.5) and radial error",
  settings: {
    target: Setting.literal(
      ["double-ring"],
      "double-ring",
      "analytic target with exact velocity (§7.4: 128 atoms on radius 1, 128 on radius 2)"
    ),
    sampler: Setting.literal(
      [...SAMPLER_NAMES, "all"],
      "precise",
      "sampler to check; 'all' sweeps every sampler at its reference level × steps 6, 10, 20, 50"
    ),
    noiseLevel: Setting.number(1.5, "the sampler's noise level (η, λ or a); ignored by 'all'", { min: 0 }),
    steps: Setting.int(20, "sampling steps N (grid linspace(1, 0, N + 1)); ignored by 'all'", { min: 1 }),
    chains: Setting.int(20_000, "independent chains (outer-mass standard error ≈ 0.0035 at 20,000)", { min: 1 }),
    cpsLogProb: Setting.literal(
      ["unnormalized", "gaussian"],
      "unnormalized",
      "CPS log-prob convention (FlowCPS's or the Gaussian one, §6.2)"
    )
  },
  nodes: {
    runs: samplerRuns.from({ config: "config" }),
    trajectories: trajectories.from({ runs: "runs" }).persist(Persist.perIteration("trajectories")),
    table: samplerTable.from({ runs: "runs" }).persist(Persist.once("sampler-table.parquet")),
    markdown: markdownTable.from({ table: "table" }).persist(Persist.once("sampler-table.md"))
  },
  info: (config) => ({
    time_convention: "rectified flow, t = σ ∈ [0, 1], σ = 1 noise",
    target: config.target,
    sampler: config.sampler
  }),
  onComplete: writeReport
})
