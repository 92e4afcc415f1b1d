/**
 * The trajectory table: one row per (trajectory, step) of a rollout, as persisted in
 * `trajectories/iter-NNNNNN.parquet`. Columns that do not apply to a step are null (a
 * deterministic step has no log-prob; a non-terminal step has no reward).
 *
 * Every state is stored once (version 2): `latent` is x_k; x_{k+1} is the next row's `latent`, and
 * only the last step's row carries `next_latent` (the final sample x_N). A transition's pair:
 *   coalesce(next_latent, lead(latent) OVER (PARTITION BY iteration, trajectory_id ORDER BY step))
 * Version 1 files (earlier runs) carry `next_latent` on every row; readers take it from the last row.
 */
import { Column, type ColumnsOf, TableDef } from "./columns.ts"

export const TrajectoryTable = new TableDef("trajectory", 2, {
  iteration: Column.int32("RL iteration that produced the row"),
  trajectory_id: Column.int32("trajectory index within the iteration"),
  prompt_id: Column.int32("index of the prompt in its prompt set"),
  prompt: Column.utf8("prompt text (null for unconditional toys)", true),
  group_id: Column.int32("group of trajectories that share a prompt (GRPO group, SDPO pair)"),
  member: Column.int32("index of the trajectory inside its group"),
  step: Column.int32("denoising step k = 0..N-1, 0 is the noisiest"),
  t: Column.float64("time at the start of the step (σ for flows, t ∈ [0,1] for VP/VE)"),
  t_next: Column.float64("time at the end of the step"),
  latent: Column.tensor("x_k, the latent before the step"),
  next_latent: Column.tensor("x_N, the final latent, on the last step's row (x_{k+1} is the next row's latent)", true),
  x0_pred: Column.tensor("x̂0, the model's clean-sample prediction at x_k", true),
  a: Column.float64("transition mean coefficient on x: μ = a·x + b·f"),
  b: Column.float64("transition mean coefficient on the model output f"),
  std: Column.float64("transition standard deviation s (0 = deterministic step)"),
  log_prob: Column.float64("log N(x_{k+1}; μ, s²I), mean over elements; null when s = 0", true),
  reward: Column.float64("reward credited to this step (terminal reward on the last step)", true),
  advantage: Column.float64("advantage used by the update", true)
})

export type TrajectoryColumns = ColumnsOf<typeof TrajectoryTable.columns>

/**
 * The adjoint-matching pipelines' trajectory table: the trajectory columns plus the adjoint of every
 * state in the adjoint window (docs/algorithms.md §10), stored like the latents — a_k on step k's row,
 * a_N on the last row — so a replay can regress again from stored adjoints. Readers of the plain
 * trajectory table read these files too.
 */
export const AdjointTrajectoryTable = new TableDef("trajectory", 2, {
  ...TrajectoryTable.columns,
  adjoint: Column.tensor("a_k, the adjoint at x_k (lean or value); null before the adjoint window", true),
  next_adjoint: Column.tensor("a_N = −λ∇r(x_N), on the last step's row", true)
})
