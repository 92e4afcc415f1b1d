/**
 * Running an experiment on this machine: every arm's settings resolved and checked before any folder
 * exists (exit 2 naming the arm), then each (arm, seed) an ordinary run folder `runs/<arm>/seed-<k>/`
 * — skipped when complete, resumed exactly when interrupted, started when missing — so adding seeds or
 * an arm later runs only what is missing, and killing the experiment loses at most the iterations in
 * flight. `experiment.json` records the definition, the resolved settings and every run's status.
 */
import { Cause, Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { UsageError } from "../kernel/errors.ts"
import type { RunnablePipeline } from "../kernel/pipeline.ts"
import type { ProgressMode } from "../kernel/progress.ts"
import { type LockOptions, readManifest } from "../kernel/run-folder.ts"
import { type RunError, runPipeline } from "../kernel/run.ts"
import { formatIssues, resolveSettings } from "../schemas/settings.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import type { ClusterRunError } from "./cluster/protocol.ts"
import { type ExperimentDef, seedsOf, type SettingValue } from "./experiment.ts"
import { writeComparison } from "./write.ts"

export interface ExperimentOptions {
  /** The experiment folder (default runs/experiments/<name>). */
  readonly out?: string
  /** Run seeds 0 … n − 1 instead of the definition's. */
  readonly seeds?: number
  /** `key=value` for every arm that has the key, `arm.key=value` for one arm. */
  readonly set?: Readonly<Record<string, string>>
  readonly progress?: ProgressMode
}

export interface PlannedRun {
  readonly arm: string
  readonly seed: number
  readonly pipeline: RunnablePipeline
  /** Relative to the experiment folder. */
  readonly dir: string
  readonly config: Readonly<Record<string, unknown>>
  readonly set: Readonly<Record<string, string>>
}

export interface Plan {
  readonly out: string
  readonly seeds: ReadonlyArray<number>
  readonly arms: ReadonlyArray<{ readonly label: string; readonly pipeline: string; readonly config: unknown }>
  readonly runs: ReadonlyArray<PlannedRun>
}

/**
 * An arm's base settings: the experiment's iterations and evaluation, then the arm's own. Runs keep
 * `minimal` folders unless the arm says otherwise (metrics, evaluation, report, best and last weights:
 * an MNIST run of 15 iterations is ~25 MB instead of ~180 MB, so dozens fit), all a comparison reads.
 */
const baseSettings = (def: ExperimentDef, pipeline: RunnablePipeline, own: Readonly<Record<string, SettingValue>>) => {
  const common: Record<string, SettingValue> = {
    keep: "minimal",
    ...(def.iterations === undefined ? {} : { iterations: def.iterations }),
    ...(def.evaluate?.steps === undefined ? {} : { evalSteps: def.evaluate.steps }),
    ...(def.evaluate?.samplesPerPrompt === undefined ? {} : { evalSamplesPerPrompt: def.evaluate.samplesPerPrompt }),
    ...(def.evaluate?.every === undefined ? {} : { evalEvery: def.evaluate.every })
  }
  return { ...Object.fromEntries(Object.entries(common).filter(([k]) => k in pipeline.settings)), ...own }
}

/** `--set` overrides split by arm; a key no arm has is a usage error. */
const overridesOf = (def: ExperimentDef, set: Readonly<Record<string, string>>) => {
  const labels = def.arms.map((a) => a.label)
  const perArm = new Map(labels.map((l) => [l, {} as Record<string, string>]))
  for (const [key, value] of Object.entries(set)) {
    const arm = labels.find((l) => key.startsWith(`${l}.`))
    const name = arm === undefined ? key : key.slice(arm.length + 1)
    const targets = def.arms.filter((a) => (arm === undefined || a.label === arm) && name in a.pipeline.settings)
    if (targets.length === 0) {
      throw new UsageError({
        message: `experiment ${def.name}: --set ${key}: ${
          arm === undefined ? "no arm" : `arm ${arm}`
        } has a setting "${name}"`
      })
    }
    for (const a of targets) perArm.get(a.label)![name] = value
  }
  return perArm
}

/** Resolves and checks every arm before anything is written; the problems of all arms in one error. */
export const planExperiment = (def: ExperimentDef, options: ExperimentOptions = {}): Plan => {
  const seeds = options.seeds === undefined ? seedsOf(def.seeds) : seedsOf(options.seeds)
  if (seeds.length === 0) throw new UsageError({ message: `experiment ${def.name}: --seeds must be at least 1` })
  const overrides = overridesOf(def, options.set ?? {})
  const problems: Array<string> = []
  const arms = def.arms.map((arm) => {
    const own = baseSettings(def, arm.pipeline, arm.settings)
    // Strings are read as `--set` reads them ("6" for an integer setting); --set itself wins.
    const config = Object.fromEntries(Object.entries(own).filter(([, v]) => typeof v !== "string"))
    const strings = Object.fromEntries(Object.entries(own).filter(([, v]) => typeof v === "string")) as Record<
      string,
      string
    >
    const set = { ...strings, ...overrides.get(arm.label)! }
    const resolved = resolveSettings(arm.pipeline.settings, config, set)
    if (Exit.isFailure(resolved)) {
      const issues = Cause.findErrorOption(resolved.cause)
      const text = formatIssues(arm.pipeline.name, issues._tag === "Some" ? issues.value : [])
      problems.push(...text.split("\n").map((line) => `arm ${arm.label}: ${line}`))
      return { arm, config, set, resolved: undefined }
    }
    problems.push(
      ...arm.pipeline.check(resolved.value).map((p) => `arm ${arm.label}: pipeline ${arm.pipeline.name}: ${p}`)
    )
    return { arm, config, set, resolved: resolved.value }
  })
  if (problems.length > 0) throw new UsageError({ message: `experiment ${def.name}:\n${problems.join("\n")}` })
  return {
    out: options.out ?? path.join("runs", "experiments", def.name),
    seeds,
    arms: arms.map((a) => ({ label: a.arm.label, pipeline: a.arm.pipeline.name, config: a.resolved })),
    runs: arms.flatMap((a) =>
      seeds.map((seed) => ({
        arm: a.arm.label,
        seed,
        pipeline: a.arm.pipeline,
        dir: path.join("runs", a.arm.label, `seed-${seed}`),
        config: a.config,
        set: a.set
      }))
    )
  }
}

export type RunStatus = "complete" | "interrupted" | "failed" | "missing" | "running"

export const runStatus = (dir: string): RunStatus => {
  if (!fs.existsSync(path.join(dir, "manifest.json"))) return "missing"
  // A manifest says "running" while its process lives (or until a killed one's run is resumed).
  const status = readManifest(dir).status
  return status === "complete" || status === "failed" || status === "running" ? status : "interrupted"
}

/** experiment.json: the definition, each arm's resolved settings and each run's status. */
const writeRecord = (def: ExperimentDef, plan: Plan, status: (run: PlannedRun) => RunStatus) =>
  writeFileAtomic(
    path.join(plan.out, "experiment.json"),
    JSON.stringify(
      {
        format: "etaflow.experiment/1",
        name: def.name,
        doc: def.doc,
        ...(def.budget === undefined ? {} : { budget: def.budget }),
        seeds: plan.seeds,
        arms: plan.arms,
        claims: def.claims ?? [],
        ...(def.confidence === undefined ? {} : { confidence: def.confidence }),
        runs: plan.runs.map((r) => ({ arm: r.arm, seed: r.seed, dir: r.dir, status: status(r) }))
      },
      null,
      2
    ) + "\n"
  )

/**
 * What carries out an experiment's runs. The experiment hands it the runs that are not complete and a
 * callback to record each one's progress; the local executor runs them here, in order, and the
 * cluster executor (cluster/executor.ts) submits them to runners instead — the experiment does not change.
 */
export interface Executor {
  readonly name: string
  readonly execute: (
    runs: ReadonlyArray<PlannedRun & { readonly out: string; readonly resume: boolean }>,
    progress: ProgressMode,
    started: (run: PlannedRun) => void,
    finished: (run: PlannedRun) => void
  ) => Effect.Effect<void, RunError<RunnablePipeline> | ClusterRunError>
}

/**
 * One planned run, here: started fresh in `out`, or resumed exactly from its folder. `set` adds to a
 * fresh run's settings (a runner's thread count); `lock` is how the folder's lock treats another host's.
 */
export const carryOut = (
  r: PlannedRun & { readonly out: string; readonly resume: boolean },
  options: {
    readonly progress: ProgressMode
    readonly set?: Readonly<Record<string, string>>
    readonly lock?: LockOptions
  }
) => {
  const common = { progress: options.progress, ...(options.lock === undefined ? {} : { lock: options.lock }) }
  return r.resume
    ? runPipeline(r.pipeline, { resume: r.out, ...common })
    : runPipeline(r.pipeline, {
      config: r.config,
      set: { ...r.set, ...options.set },
      seed: r.seed,
      out: r.out,
      ...common
    })
}

/** In this process, one run after another: a fresh run, or the exact resume of an interrupted one. */
export const localExecutor: Executor = {
  name: "local",
  execute: (runs, progress, started, finished) =>
    Effect.forEach(runs, (r) =>
      Effect.gen(function*() {
        started(r)
        yield* carryOut(r, { progress })
        finished(r)
      }), { discard: true })
}

/** Runs what is missing, resumes what was interrupted, then writes the comparison. Returns the folder. */
export const runExperiment = (def: ExperimentDef, options: ExperimentOptions & { readonly executor?: Executor } = {}) =>
  Effect.gen(function*() {
    const plan = yield* Effect.try({
      try: () => planExperiment(def, options),
      catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: String(e) }))
    })
    fs.mkdirSync(plan.out, { recursive: true })
    const statusOf = (r: PlannedRun) => runStatus(path.join(plan.out, r.dir))
    writeRecord(def, plan, statusOf)
    const pending = plan.runs.flatMap((r) => {
      const status = statusOf(r)
      return status === "complete" ? [] : [{ ...r, out: path.join(plan.out, r.dir), resume: status !== "missing" }]
    })
    const running = new Set<PlannedRun>()
    const record = () => writeRecord(def, plan, (q) => (running.has(q) ? "running" : statusOf(q)))
    yield* (options.executor ?? localExecutor).execute(
      pending,
      options.progress ?? "none",
      (r) => {
        running.add(plan.runs.find((q) => q.dir === r.dir)!)
        record()
      },
      (r) => {
        running.delete(plan.runs.find((q) => q.dir === r.dir)!)
        record()
      }
    )
    writeComparison(plan.out)
    return plan.out
  })
