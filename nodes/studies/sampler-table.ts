/**
 * samplerTable: what each sampler run put where — outer-ring mass (‖x‖ > 1.5) with its Monte-Carlo
 * standard error, and the mean distance to the nearest ring — as an Arrow table; and
 * samplerTableMarkdown, the same table for people.
 */
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import { Node, Port } from "../../kernel/node.ts"
import { Column, TableDef } from "../../schemas/columns.ts"
import type { SamplerRuns } from "./sampler-runs.ts"

export const SamplerCheckTable = new TableDef("sampler_check", 1, {
  sampler: Column.utf8("sampler name (diffusion/samplers.ts registry)"),
  noise: Column.float64("noise level given to the sampler"),
  steps: Column.int32("number of sampling steps N"),
  chains: Column.int32("number of chains"),
  outer_mass: Column.float64("fraction of final samples with ‖x‖ > 1.5 (target 0.5)"),
  outer_mass_se: Column.float64("Monte-Carlo standard error of outer_mass"),
  radial_error: Column.float64("mean distance of final samples to the nearest ring")
})

export interface RingStats {
  readonly outerMass: number
  readonly outerMassSe: number
  readonly radialError: number
}

export const ringStats = (final: Float32Array, chains: number): RingStats => {
  let outer = 0
  let radial = 0
  for (let j = 0; j < chains; j++) {
    const r = Math.hypot(final[2 * j], final[2 * j + 1])
    if (r > 1.5) outer++
    radial += Math.min(Math.abs(r - 1), Math.abs(r - 2))
  }
  const p = outer / chains
  return { outerMass: p, outerMassSe: Math.sqrt((p * (1 - p)) / chains), radialError: radial / chains }
}

export const samplerTable = Node.make({
  name: "table",
  doc: "outer-ring mass, its standard error and the radial error of every sampler run",
  inputs: { runs: Port.of<SamplerRuns>() },
  run: ({ runs }) =>
    Effect.sync(() => {
      const stats = runs.map((r) => ringStats(r.rollout.final, r.rollout.chains))
      return SamplerCheckTable.build(runs.length, {
        sampler: runs.map((r) => r.sampler),
        noise: Float64Array.from(runs, (r) => r.noise),
        steps: Int32Array.from(runs, (r) => r.steps),
        chains: Int32Array.from(runs, (r) => r.rollout.chains),
        outer_mass: Float64Array.from(stats, (s) => s.outerMass),
        outer_mass_se: Float64Array.from(stats, (s) => s.outerMassSe),
        radial_error: Float64Array.from(stats, (s) => s.radialError)
      }, {})
    }),
  // One run logs the plain names; a sweep logs one set per (sampler, steps).
  metrics: (table, { runs }) => {
    const { columns } = SamplerCheckTable.read(table, "samplerTable")
    const suffix = (i: number) => (runs.length === 1 ? "" : `.${runs[i].sampler}.n${runs[i].steps}`)
    return Object.fromEntries(runs.flatMap((_, i) => [
      [`outer_mass${suffix(i)}`, columns.outer_mass[i]],
      [`outer_mass_se${suffix(i)}`, columns.outer_mass_se[i]],
      [`radial_error${suffix(i)}`, columns.radial_error[i]]
    ]))
  }
})

/** A markdown table of any flat Arrow table (numbers to 4 significant digits). */
export const markdownOf = (table: arrow.Table): string => {
  const names = table.schema.fields.map((f) => f.name)
  const cell = (v: unknown) => (typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(4) : String(v))
  const rows = Array.from({ length: table.numRows }, (_, i) => names.map((n) => cell(table.getChild(n)!.get(i))))
  return [
    `| ${names.join(" | ")} |`,
    `|${names.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ].join("\n") + "\n"
}

export const markdownTable = Node.make({
  name: "markdown",
  doc: "a table rendered as markdown, for the run folder and issue notes",
  inputs: { table: Port.of<arrow.Table>() },
  run: ({ table }) => Effect.sync(() => markdownOf(table))
})
