/**
 * What the adjoint-matching pipelines share (docs/algorithms.md §10): the iteration DAG
 *   prompts → rollout → rewards → adjoint → trajectoryTable → update → evaluation → evalTable
 * with the data set, reward classifier, judge and rectified-flow base model computed once, and the
 * RL pipelines' state, iterations, report and retention. There are no advantages: the update
 * regresses the drift onto a target built from the reward's gradient carried back by the adjoint.
 */
import type { AdjointKind } from "../diffusion/adjoint.ts"
import { Persist } from "../kernel/node.ts"
import { adjoint, rewardGradientProblems } from "../nodes/adjoint/adjoint.ts"
import type { AmConfig } from "../nodes/adjoint/config.ts"
import { adjointUpdate } from "../nodes/adjoint/update.ts"
import { restoreAdjoints, restoreTrajectories, restoreUpdate } from "../nodes/rl/restore.ts"
import { rollout } from "../nodes/rl/rollout.ts"
import { amTrajectoryTable } from "../nodes/rl/trajectory-table.ts"
import { checkRlConfig, evaluationEntries, rewardEntry, rlPipeline, setupEntries } from "./rl-pipeline.ts"

export interface AmVariant {
  /** ODE rollouts and the deterministic loss (seed 002), or memoryless SDE rollouts (adjoint matching). */
  readonly deterministic: boolean
  readonly kind: (c: AmConfig) => AdjointKind
}

export const amNodes = (variant: AmVariant) => ({
  ...setupEntries("rf"),
  rollout: rollout<AmConfig>({ sharedNoise: false, deterministic: variant.deterministic })
    .from({ state: "state", base: "base", prompts: "prompts", config: "config", iteration: "iteration" })
    .restoredBy(restoreTrajectories),
  rewards: rewardEntry(),
  adjoint: adjoint(variant)
    .from({ trajectories: "rollout", base: "base", state: "state", classifier: "classifier", config: "config" })
    .restoredBy(restoreAdjoints),
  trajectoryTable: amTrajectoryTable
    .from({ trajectories: "rollout", rewards: "rewards", adjoint: "adjoint" })
    .persist(Persist.perIteration("trajectories")),
  update: adjointUpdate(variant)
    .from({ trajectories: "rollout", adjoint: "adjoint", state: "state", base: "base", config: "config" })
    .restoredBy(restoreUpdate),
  ...evaluationEntries()
})

/**
 * Memoryless samplers of the RF base (docs/algorithms.md §10): the Flow-GRPO SDE at a = √2 is the paper's
 * σ(t)² = 2(1 − t)/t; DDIM η = 1 (gDDIM λ = 1, the same sampler) draws DDPM's posterior, its discrete form.
 */
const isMemoryless = (sampler: string, noise: number): boolean =>
  (sampler === "flow-grpo" && Math.abs(noise - Math.SQRT2) < 1e-9) ||
  ((sampler === "ddim" || sampler === "gddim") && Math.abs(noise - 1) < 1e-9)

/**
 * Refused before any folder exists: what the RL check refuses, a reward without a gradient, a
 * truncation longer than the trajectory, and (adjoint matching) a deterministic sampler.
 */
const checkAmConfig = (variant: AmVariant) => (c: AmConfig): Array<string> => {
  const problems = checkRlConfig({ process: "rf" })(c)
  if (problems.length === 0) problems.push(...rewardGradientProblems(c))
  if (c.adjointSteps > c.steps) {
    problems.push(`setting "adjointSteps": K = ${c.adjointSteps} is more than the ${c.steps} steps (0 = all)`)
  }
  const noise = c.noiseLevel ?? c.eta ?? 0
  if (!variant.deterministic && (c.sampler === "ode" || noise === 0)) {
    problems.push(
      `setting "sampler": adjoint matching regresses onto s·a with the sampler's std s; ${c.sampler} at noise ` +
        `${noise} has none (use flow-grpo at noiseLevel √2, the memoryless schedule)`
    )
  } else if (!variant.deterministic && c.memoryless && !isMemoryless(c.sampler, noise)) {
    problems.push(
      `setting "sampler": ${c.sampler} at noise ${noise} is not memoryless, so p_base·exp(λr) is not what adjoint ` +
        `matching converges to; the memoryless samplers are flow-grpo at noiseLevel ${Math.SQRT2} (√2) and ddim or ` +
        `gddim at 1 (--set memoryless=false trains with it anyway, to study the difference)`
    )
  }
  return problems
}

export const amPipeline = (def: { readonly name: string; readonly variant: AmVariant }) => ({
  ...rlPipeline<AmConfig>({
    name: def.name,
    algorithm: def.name,
    variant: { process: "rf" },
    info: (c) => ({ lambda: c.lambda, adjoint_steps: c.adjointSteps, adjoint: def.variant.kind(c) })
  }),
  // New pipelines: no stage names of earlier releases to accept.
  aliases: {},
  check: checkAmConfig(def.variant)
})
