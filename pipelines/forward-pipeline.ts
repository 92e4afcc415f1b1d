/**
 * What the forward-process pipelines share (DiffusionNFT, AWM; docs/algorithms.md §14): the RL pipelines'
 * DAG with the forward update in place of the policy-gradient one,
 *   prompts → rollout → rewards → advantages → trajectoryTable → update → evaluation → evalTable,
 * on the base the `process` setting names, with any sampler for the rollouts (the ODE by default).
 */
import { Persist } from "../kernel/node.ts"
import type { ForwardKind } from "../models/forward-loss.ts"
import { groupAdvantages } from "../nodes/rl/advantages.ts"
import type { ForwardPipelineConfig } from "../nodes/rl/forward-config.ts"
import { forwardUpdate } from "../nodes/rl/forward-update.ts"
import { restoreAdvantages, restoreTrajectories, restoreUpdate } from "../nodes/rl/restore.ts"
import { rollout } from "../nodes/rl/rollout.ts"
import { rlTrajectoryTable } from "../nodes/rl/trajectory-table.ts"
import { checkRlConfig, evaluationEntries, rewardEntry, rlPipeline, setupEntries } from "./rl-pipeline.ts"

export const forwardNodes = (kind: ForwardKind) => ({
  ...setupEntries("setting"),
  rollout: rollout<ForwardPipelineConfig>({ sharedNoise: false })
    .from({ state: "state", base: "base", prompts: "prompts", config: "config", iteration: "iteration" })
    .restoredBy(restoreTrajectories),
  rewards: rewardEntry(),
  // Per-prompt group advantages (population std + 1e-4), as both references compute them.
  advantages: groupAdvantages({ std: "population", eps: 1e-4 })
    .from({ rewards: "rewards", trajectories: "rollout", state: "state", config: "config" })
    .restoredBy(restoreAdvantages),
  trajectoryTable: rlTrajectoryTable
    .from({ trajectories: "rollout", rewards: "rewards", advantages: "advantages" })
    .persist(Persist.perIteration("trajectories")),
  update: forwardUpdate(kind)
    .from({ trajectories: "rollout", advantages: "advantages", state: "state", base: "base", config: "config" })
    .restoredBy(restoreUpdate),
  ...evaluationEntries()
})

export const forwardPipeline = (def: { readonly name: string; readonly kind: ForwardKind }) => ({
  ...rlPipeline<ForwardPipelineConfig>({
    name: def.name,
    algorithm: def.name,
    variant: { process: "rf" },
    info: (c) => ({ process: c.process, update: def.kind })
  }),
  aliases: {},
  // The sampler must suit the base the `process` setting picks; the update trains CFG-free (both references).
  check: (c: ForwardPipelineConfig) => [
    ...checkRlConfig({ process: c.process })(c),
    ...(c.cfg === 1
      ? []
      : [
        `setting "cfg": ${def.name} trains CFG-free, as its reference does; the rollout's guidance would not be trained`
      ])
  ]
})
