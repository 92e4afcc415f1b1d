/**
 * What the RL pipelines share: the iteration DAG
 *   prompts → rollout → rewards → advantages → trajectoryTable → update → evaluation → evalTable
 * with the data set, reward classifier and base model computed once (`rlNodes`), and the rest of a
 * pipeline definition — state, iterations, info, the old stage names replay still accepts, the
 * report written after every run (`rlPipeline`). Each algorithm's file adds only what differs: its
 * settings' defaults, its advantage normalizer and its variant (process, shared noise, window).
 */
import { Effect } from "effect"
import * as path from "node:path"
import { SAMPLERS } from "../diffusion/samplers.ts"
import { type Node, Persist, Port } from "../kernel/node.ts"
import { readMetrics } from "../kernel/run-folder.ts"
import { parseStopRules } from "../kernel/watch.ts"
import { evalSamples, evalTable } from "../nodes/eval/eval-tables.ts"
import { evaluation } from "../nodes/eval/evaluation.ts"
import type { Advantages } from "../nodes/rl/advantages.ts"
import { type RlConfig, type RlVariant, type SharedConfig, taskProblems } from "../nodes/rl/config.ts"
import { restoreAdvantages, restoreRewards, restoreTrajectories, restoreUpdate } from "../nodes/rl/restore.ts"
import { rewardProblems, type Rewards, rewards } from "../nodes/rl/rewards.ts"
import { rollout, type Trajectories } from "../nodes/rl/rollout.ts"
import { decodeRlState, encodeRlState, type RlState } from "../nodes/rl/state.ts"
import { rlTrajectoryTable } from "../nodes/rl/trajectory-table.ts"
import { policyUpdate, type UpdateResult } from "../nodes/rl/update.ts"
import { rlBaseNet } from "../nodes/setup/base-model.ts"
import { trainingData } from "../nodes/setup/dataset.ts"
import { modelProblems, rlBaseModel } from "../nodes/setup/policy-model.ts"
import { prompts } from "../nodes/setup/prompts.ts"
import { defaultClassifier, defaultJudge, PROXY_REQUEST, usesProxy } from "../nodes/setup/reward-classifier.ts"
import { writeReport } from "../report/report.ts"
import { messageOf } from "../schemas/message.ts"
import { pruneRun, rlRetention } from "./rl-retention.ts"

/**
 * What every RL and adjoint-matching pipeline has before its rollout: the data set, reward classifier,
 * judge and base model (computed once) and the iteration's prompts.
 */
export const setupEntries = (process: "rf" | "vp" | "setting") => ({
  data: trainingData.from({ config: "config" }).once(),
  classifier: defaultClassifier.from({ data: "data", config: "config" }).once(),
  judge: defaultJudge.from({ data: "data", config: "config" }).once(),
  base: rlBaseModel(process).from({ data: "data", config: "config" }).once(),
  prompts: prompts.from({ config: "config" })
})

/** ... and after its update: the evaluation and its two tables. */
export const evaluationEntries = () => ({
  evaluation: evaluation.from({
    update: "update",
    base: "base",
    classifier: "classifier",
    judge: "judge",
    data: "data",
    config: "config",
    iteration: "iteration"
  }),
  evalTable: evalTable.from({ evaluation: "evaluation" }).persist(Persist.perIteration("eval")),
  evalSamples: evalSamples.from({ evaluation: "evaluation" }).persist(Persist.perIteration("eval-samples"))
})

/** The terminal rewards of the rollout, restored from the stored trajectories on replay. */
export const rewardEntry = () =>
  rewards.from({ trajectories: "rollout", classifier: "classifier", config: "config" }).restoredBy(restoreRewards)

/** The entries of an RL pipeline with the given advantage normalizer. */
export const rlNodes = <C extends RlConfig, AC, E, R>(
  variant: RlVariant<C>,
  advantages: Node<
    { rewards: Rewards; trajectories: Trajectories; state: RlState | null; config: AC },
    Advantages,
    E,
    R
  >
) => ({
  ...setupEntries(variant.process),
  rollout: rollout(variant)
    .from({ state: "state", base: "base", prompts: "prompts", config: "config", iteration: "iteration" })
    .restoredBy(restoreTrajectories),
  rewards: rewardEntry(),
  advantages: advantages.from({ rewards: "rewards", trajectories: "rollout", state: "state", config: "config" })
    .restoredBy(restoreAdvantages),
  trajectoryTable: rlTrajectoryTable
    .from({ trajectories: "rollout", rewards: "rewards", advantages: "advantages" })
    .persist(Persist.perIteration("trajectories")),
  update: policyUpdate(variant)
    .from({ trajectories: "rollout", advantages: "advantages", state: "state", base: "base", config: "config" })
    .restoredBy(restoreUpdate),
  ...evaluationEntries()
})

const TIME_CONVENTION = {
  rf: () => "rectified flow, t = σ ∈ [0, 1], σ = 1 noise",
  vp: (c: SharedConfig) =>
    `VP scaled-linear, integer timesteps 0..999 (${c.spacing ?? "leading"} training grid, trailing evaluation)`
}

/**
 * Settings that do not go together, and reward files that are not there: refused before any folder
 * exists instead of failing after the base model has trained.
 */
export const checkRlConfig =
  (variant: Pick<RlVariant, "process" | "rationorm">) => (c: SharedConfig): Array<string> => {
    const problems: Array<string> = []
    const processes: ReadonlyArray<string> = SAMPLERS[c.sampler].processes
    if (!processes.includes(variant.process)) {
      problems.push(
        `sampler ${c.sampler} is defined for ${processes.join(", ")}; this pipeline's base model is ${variant.process}`
      )
    }
    return [
      ...problems,
      ...taskProblems(c),
      ...rewardProblems(c),
      ...watchProblems(c),
      ...modelProblems(c, variant.process, rlBaseNet(c.dataset, c.arch))
    ]
  }

/** A `stopWhen` that does not parse, or a `best` without a metric name: refused with the rule's message. */
const watchProblems = (c: Pick<SharedConfig, "stopWhen" | "best">): Array<string> => {
  const problems: Array<string> = []
  try {
    parseStopRules(c.stopWhen)
  } catch (e) {
    problems.push(`setting "stopWhen": ${messageOf(e)}`)
  }
  if (c.best.trim() === "" || c.best === "min:") problems.push(`setting "best": a metric name, or min:NAME`)
  return problems
}

const proxyDescription = {
  hidden: PROXY_REQUEST.hidden,
  layers: PROXY_REQUEST.layers,
  train_digits: PROXY_REQUEST.trainDigits,
  epochs: PROXY_REQUEST.epochs
}

/** The closing line of an RL run: the last evaluation at the training step count, and the report. */
export const summaryOf = (dir: string, steps: number): string => {
  const rows = readMetrics(path.join(dir, "metrics.jsonl"))
  const last = (name: string) => rows.filter((r) => r.name === name).at(-1)
  const [imp, impSe, gap, gapSe] = ["improvement", "improvement", "gap", "gap"].map((m, i) =>
    last(`eval.${m}.s${steps}${i % 2 === 1 ? ".se" : ""}`)
  )
  const fmt = (v: { value: number } | undefined, se: { value: number } | undefined) =>
    v === undefined ? "n/a" : `${v.value.toFixed(3)} ± ${(se?.value ?? Number.NaN).toFixed(3)}`
  // On tilt, where the optimum's reward is known: how far toward it, and how often the judge sees a target digit.
  const tiltMetric = (m: string) => last(`eval.${m}`)
  const [norm, normSe, hit, hitBase] = [
    `normalised.s${steps}`,
    `normalised.s${steps}.se`,
    `hit.s${steps}`,
    `hit_base.s${steps}`
  ].map(tiltMetric)
  const tilt = norm === undefined || hit === undefined || hitBase === undefined
    ? ""
    : `, normalised reward ${fmt(norm, normSe)}, target hit rate ${hitBase.value.toFixed(2)} → ${hit.value.toFixed(2)}`
  return `done: ODE improvement at ${steps} steps ${fmt(imp, impSe)}${tilt}, SDE − ODE gap ${fmt(gap, gapSe)}` +
    ` (iteration ${imp?.iteration ?? "n/a"}); report ${path.join(dir, "report.html")}`
}

/**
 * The definition every RL pipeline shares: iterations, the state (weights, AdamW, tracker; null
 * before the first update) held in the update's output, info, the report, and the stage names of
 * earlier releases that `replay --from` still accepts (with a deprecation line).
 */
export const rlPipeline = <C extends SharedConfig>(def: {
  readonly name: string
  readonly algorithm: string
  readonly variant: Pick<RlVariant, "process" | "rationorm">
  readonly info?: (config: C) => Readonly<Record<string, unknown>>
}) => ({
  name: def.name,
  iterations: (c: C) => c.iterations,
  state: {
    type: Port.of<RlState | null>(),
    initial: () => Effect.succeed(null),
    next: "update" as const,
    select: (u: UpdateResult): RlState | null => u.state,
    encode: encodeRlState,
    // safetensors and JSON made afresh for each checkpoint.
    encodesCopies: true,
    decode: decodeRlState
  },
  info: (c: C) => ({
    algorithm: def.algorithm,
    sampler: c.sampler,
    time_convention: TIME_CONVENTION[def.variant.process](c),
    // The proxy's make-up beside the run (its held-out accuracy is the `test_accuracy` metric, §13.4).
    ...(usesProxy(c) ? { proxy: proxyDescription } : {}),
    ...def.info?.(c)
  }),
  aliases: { score: "rewards", normalize: "advantages", evaluate: "evaluation", promptBatch: "prompts" } as const,
  onComplete: (dir: string, c: C, note: (line: string) => void) => {
    writeReport(dir)
    note(summaryOf(dir, c.steps))
    // A minimal run keeps its best and last checkpoints only, decided once the run is complete.
    if (c.keep === "minimal") pruneRun(dir, "minimal")
  },
  check: checkRlConfig(def.variant),
  retention: (c: C) => rlRetention(c.keep),
  stopRules: (c: C) => parseStopRules(c.stopWhen)
})
