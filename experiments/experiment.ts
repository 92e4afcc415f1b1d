/**
 * An experiment: arms (a pipeline and its settings) × seeds, run as ordinary run folders and compared
 * across seeds with paired errors; claims are comparisons whose verdicts are computed from the
 * comparison, never written by hand (docs/design.md, "Experiments").
 *
 *   const sweep = Experiment.define({
 *     name: "eta-sweep", doc: "…", seeds: 3, iterations: 20,
 *     arms: [Experiment.arm("eta-1.0", ddpo, { sampler: "gddim", eta: 1 }), Experiment.arm("eta-1.5", ddpo, { … })],
 *     claims: [{ name: "more noise, larger ODE gain", metric: "eval.improvement.s10", arm: "eta-1.5", than: "eta-1.0",
 *       direction: ">" }]
 *   })
 */
import type { RunnablePipeline } from "../kernel/pipeline.ts"

export type SettingValue = string | number | boolean | ReadonlyArray<number>

export interface Arm {
  readonly label: string
  readonly pipeline: RunnablePipeline
  /** The arm's settings (decoded values, as in a --config file). */
  readonly settings: Readonly<Record<string, SettingValue>>
}

/**
 * metric(arm) − metric(than), in the claimed direction, paired by seed: at the last iteration both
 * report (`at: "last"`, the default), as the mean level of the learning curve over the evaluations both
 * report (`"area"`: the area under it over its span), at equal compute seconds (`"seconds"`: both
 * curves read at the seconds the cheaper run had spent by its last evaluation), where another metric
 * first reaches the largest level both arms reach (`{ equal: "eval.path_kl.s10" }`: gold at equal KL),
 * or as the compute seconds each arm takes to reach the level of `metric` the weaker arm ends at
 * (`"reach"`; the effect is then in seconds) — experiments/curves.ts.
 */
export interface ArmClaim {
  readonly name: string
  readonly metric: string
  readonly arm: string
  readonly than: string
  readonly direction: ">" | "<"
  readonly at?: "last" | "area" | "seconds" | "reach" | { readonly equal: string } | undefined
}

/** metric at the arm's last report − metric at its first, in the claimed direction (e.g. the gap narrows). */
export interface TrainingClaim {
  readonly name: string
  readonly metric: string
  readonly arm: string
  readonly over: "training"
  readonly direction: ">" | "<"
}

export type Claim = ArmClaim | TrainingClaim

export interface ExperimentDef {
  readonly name: string
  readonly doc: string
  readonly arms: ReadonlyArray<Arm>
  /** A count (seeds 0 … n − 1) or the seeds themselves. */
  readonly seeds: number | ReadonlyArray<number>
  /** Iterations of every arm (when its pipeline has the setting). */
  readonly iterations?: number
  /** The evaluation of every arm: step counts, samples per prompt, every how many iterations. */
  readonly evaluate?: {
    readonly steps?: ReadonlyArray<number>
    readonly samplesPerPrompt?: number
    readonly every?: number
  }
  readonly claims?: ReadonlyArray<Claim>
  /** The confidence of the claims' two-sided paired t tests (default 0.95; experiments/stats.ts). */
  readonly confidence?: number
  /** What a run of it costs, in words (machine, minutes). */
  readonly budget?: string
}

const problemsOf = (def: ExperimentDef): Array<string> => {
  const labels = def.arms.map((a) => a.label)
  const problems: Array<string> = []
  if (def.arms.length === 0) problems.push("has no arms")
  for (const label of labels) {
    if (!/^[A-Za-z0-9._-]+$/.test(label)) {
      problems.push(`arm "${label}": labels are folder names (letters, digits, . _ -)`)
    }
  }
  const dupes = labels.filter((l, i) => labels.indexOf(l) !== i)
  if (dupes.length > 0) problems.push(`arm labels must be unique: ${[...new Set(dupes)].join(", ")}`)
  const seeds = typeof def.seeds === "number" ? [def.seeds] : def.seeds
  if (seeds.length === 0 || seeds.some((s) => !Number.isSafeInteger(s) || s < 0)) {
    problems.push(`seeds must be a positive count or non-negative integers (given ${JSON.stringify(def.seeds)})`)
  }
  if (def.confidence !== undefined && !(def.confidence > 0 && def.confidence < 1)) {
    problems.push(`confidence must be between 0 and 1, e.g. 0.95 (given ${def.confidence})`)
  }
  for (const c of def.claims ?? []) {
    for (const arm of "than" in c ? [c.arm, c.than] : [c.arm]) {
      if (!labels.includes(arm)) {
        problems.push(`claim "${c.name}" names arm "${arm}", which is not one of ${labels.join(", ")}`)
      }
    }
  }
  return problems
}

export const Experiment = {
  /** Checks the definition (labels, seeds, the arms claims name); throws naming what is wrong. */
  define: (def: ExperimentDef): ExperimentDef => {
    const problems = problemsOf(def)
    if (problems.length > 0) throw new Error(`experiment ${def.name}: ${problems.join("; ")}`)
    return def
  },
  /** An arm whose setting names are checked against its pipeline's by the compiler. */
  arm: <P extends RunnablePipeline>(
    label: string,
    pipeline: P,
    settings: Partial<Record<keyof P["settings"] & string, SettingValue>> = {}
  ): Arm => ({ label, pipeline, settings: settings as Readonly<Record<string, SettingValue>> })
}

export const seedsOf = (seeds: number | ReadonlyArray<number>): Array<number> =>
  typeof seeds === "number" ? Array.from({ length: seeds }, (_, i) => i) : [...seeds]
