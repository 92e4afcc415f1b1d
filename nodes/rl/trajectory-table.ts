/**
 * trajectories: rollouts as the trajectory table (one row per (trajectory, step), schemas/trajectory.ts).
 * `toTrajectoryTable` is the one place a Rollout becomes Arrow; `trajectories` is the node that
 * does it for the rollouts of a sampler check.
 */
import type * as arrow from "apache-arrow"
import type { Rollout } from "../../diffusion/rollout.ts"
import { Node, Port } from "../../kernel/node.ts"
import { NodeContext } from "../../kernel/services.ts"
import { AdjointTrajectoryTable, TrajectoryTable } from "../../schemas/trajectory.ts"
import type { Adjoints } from "../../training/adjoints.ts"
import type { SamplerRuns } from "../studies/sampler-runs.ts"
import type { Advantages, StepAdvantages } from "./advantages.ts"
import type { DenseRewards } from "./dense-rewards.ts"
import type { Rewards } from "./rewards.ts"
import type { Trajectories } from "./rollout.ts"

export interface TrajectoryMeta {
  readonly iteration: number
  /** trajectory_id of the first chain (ids continue across several rollouts of one iteration). */
  readonly firstId: number
  readonly promptId?: Int32Array
  readonly prompt?: ReadonlyArray<string | null>
  readonly groupId?: Int32Array
  readonly member?: Int32Array
  /** Terminal reward per trajectory, stored on its last step. */
  readonly reward?: Float64Array
  /** Advantage per trajectory, stored on every step. */
  readonly advantage?: Float64Array
  /** Dense reward and advantage per (trajectory, step), n × N (SDPO); they take precedence. */
  readonly rewardPerStep?: Float64Array
  readonly advantagePerStep?: Float64Array
}

/** x_N on each trajectory's last row, null elsewhere: every state is stored once. */
const finalLatent = (r: Rollout, rows: number) => {
  const { chains, d } = r
  const N = r.steps.length
  const values = new Float32Array(rows * d)
  const valid = new Uint8Array(rows)
  for (let j = 0; j < chains; j++) {
    const row = j * N + N - 1
    values.set(r.latents!.subarray(N * chains * d + j * d, N * chains * d + (j + 1) * d), row * d)
    valid[row] = 1
  }
  return { values, valid }
}

/** The trajectory table of a recorded rollout; rows are chain-major, steps in order. */
export const toTrajectoryTable = (r: Rollout, meta: TrajectoryMeta): arrow.Table => {
  const { rows, columns } = trajectoryColumns(r, meta)
  return TrajectoryTable.build(rows, columns, { latent: r.shape, next_latent: r.shape, x0_pred: r.shape })
}

/** The same with the adjoints of the window: a_k on row (j, k) for k ≥ from, a_N on the last rows. */
export const toAdjointTable = (r: Rollout, meta: TrajectoryMeta, adjoints: Adjoints): arrow.Table => {
  const { rows, columns } = trajectoryColumns(r, meta)
  const { chains, d } = r
  const N = r.steps.length
  const adjoint = { values: new Float32Array(rows * d), valid: new Uint8Array(rows) }
  const next = { values: new Float32Array(rows * d), valid: new Uint8Array(rows) }
  for (let j = 0; j < chains; j++) {
    for (let k = adjoints.from; k <= N; k++) {
      const target = k < N ? adjoint : next
      const row = j * N + Math.min(k, N - 1)
      target.values.set(adjoints.values[k - adjoints.from].subarray(j * d, (j + 1) * d), row * d)
      target.valid[row] = 1
    }
  }
  return AdjointTrajectoryTable.build(rows, { ...columns, adjoint, next_adjoint: next }, {
    latent: r.shape,
    next_latent: r.shape,
    x0_pred: r.shape,
    adjoint: r.shape,
    next_adjoint: r.shape
  })
}

/** Column builders over the rows (trajectory j, step k) in trajectory-major order. */
const rowLayout = (r: Rollout) => {
  const { chains, d } = r
  const N = r.steps.length
  const rows = chains * N
  const n = chains * d
  const int = (f: (j: number, k: number) => number) => {
    const out = new Int32Array(rows)
    for (let j = 0; j < chains; j++) for (let k = 0; k < N; k++) out[j * N + k] = f(j, k)
    return out
  }
  const scalar = (f: (k: number) => number) => {
    const out = new Float64Array(rows)
    for (let j = 0; j < chains; j++) for (let k = 0; k < N; k++) out[j * N + k] = f(k)
    return out
  }
  const tensor = (src: Float32Array, shift: number) => {
    const out = new Float32Array(rows * d)
    for (let j = 0; j < chains; j++) {
      for (let k = 0; k < N; k++) {
        out.set(src.subarray((k + shift) * n + j * d, (k + shift) * n + (j + 1) * d), (j * N + k) * d)
      }
    }
    return out
  }
  return { N, rows, int, scalar, tensor }
}

/** The sampler's stored log-probs by row, valid where the step was stochastic (null when none was). */
const logProbColumn = (r: Rollout) => {
  const { chains } = r
  const N = r.steps.length
  const logProb = new Float64Array(chains * N)
  const valid = new Uint8Array(chains * N)
  for (let j = 0; j < chains; j++) {
    for (let k = 0; k < N; k++) {
      const v = r.logProb[k * chains + j]
      logProb[j * N + k] = Number.isNaN(v) ? 0 : v
      valid[j * N + k] = Number.isNaN(v) ? 0 : 1
    }
  }
  return valid.every((v) => v === 0) ? null : { values: logProb, valid }
}

const trajectoryColumns = (r: Rollout, meta: TrajectoryMeta) => {
  if (r.latents === undefined || r.x0Pred === undefined) {
    throw new Error("toTrajectoryTable: the rollout was not recorded (record: true)")
  }
  const { N, rows, int, scalar, tensor } = rowLayout(r)
  const columns = {
    iteration: new Int32Array(rows).fill(meta.iteration),
    trajectory_id: int((j) => meta.firstId + j),
    prompt_id: int((j) => meta.promptId?.[j] ?? 0),
    prompt: meta.prompt === undefined ? null : Array.from({ length: rows }, (_, i) => meta.prompt![Math.floor(i / N)]),
    group_id: int((j) => meta.groupId?.[j] ?? meta.firstId + j),
    member: int((j) => meta.member?.[j] ?? 0),
    step: int((_, k) => k),
    t: scalar((k) => r.steps[k].t),
    t_next: scalar((k) => r.steps[k].tNext),
    latent: tensor(r.latents, 0),
    next_latent: finalLatent(r, rows),
    x0_pred: tensor(r.x0Pred, 0),
    a: scalar((k) => r.steps[k].a),
    b: scalar((k) => r.steps[k].b),
    std: scalar((k) => r.steps[k].s),
    log_prob: logProbColumn(r),
    reward: meta.rewardPerStep !== undefined ? meta.rewardPerStep : meta.reward === undefined ? null : {
      values: Float64Array.from({ length: rows }, (_, i) => (i % N === N - 1 ? meta.reward![Math.floor(i / N)] : 0)),
      valid: Uint8Array.from({ length: rows }, (_, i) => (i % N === N - 1 ? 1 : 0))
    },
    advantage: meta.advantagePerStep !== undefined ?
      meta.advantagePerStep
      : meta.advantage === undefined
      ? null
      : Float64Array.from({ length: rows }, (_, i) => meta.advantage![Math.floor(i / N)])
  }
  return { rows, columns }
}

/** Prompt and group columns of a batch of RL trajectories. */
const groupMeta = (t: Trajectories, iteration: number) => ({
  iteration,
  firstId: 0,
  promptId: t.prompts.promptId,
  prompt: t.prompts.prompt,
  groupId: t.prompts.groupId,
  member: t.prompts.member
})

/** rlTrajectoryTable: an RL iteration's trajectories with their rewards and advantages. */
export const rlTrajectoryTable = Node.make({
  name: "trajectoryTable",
  doc: "the iteration's trajectories with prompts, groups, rewards and advantages",
  inputs: { trajectories: Port.of<Trajectories>(), rewards: Port.of<Rewards>(), advantages: Port.of<Advantages>() },
  run: ({ trajectories: t, rewards, advantages }) =>
    // Built when written: a run's retention keeps only some iterations' trajectories.
    NodeContext.useSync(({ iteration }) => () =>
      toTrajectoryTable(t.rollout, {
        ...groupMeta(t, iteration),
        reward: rewards.total,
        advantage: advantages.perTrajectory
      })
    )
})

/** sdpoTrajectoryTable: the same with SDPO's dense rewards and per-step advantages. */
export const sdpoTrajectoryTable = Node.make({
  name: "trajectoryTable",
  doc: "the iteration's trajectories with dense per-step rewards and advantages",
  inputs: {
    trajectories: Port.of<Trajectories>(),
    rewards: Port.of<DenseRewards>(),
    advantages: Port.of<StepAdvantages>()
  },
  run: ({ trajectories: t, rewards, advantages }) =>
    NodeContext.useSync(({ iteration }) => () =>
      toTrajectoryTable(t.rollout, {
        ...groupMeta(t, iteration),
        rewardPerStep: rewards.perStep,
        advantagePerStep: advantages.perStep
      })
    )
})

/** amTrajectoryTable: an adjoint-matching iteration's trajectories with rewards and adjoints. */
export const amTrajectoryTable = Node.make({
  name: "trajectoryTable",
  doc: "the iteration's trajectories with prompts, rewards and the adjoint of every state in the window",
  inputs: { trajectories: Port.of<Trajectories>(), rewards: Port.of<Rewards>(), adjoint: Port.of<Adjoints>() },
  run: ({ trajectories: t, rewards, adjoint }) =>
    NodeContext.useSync(({ iteration }) => () =>
      toAdjointTable(t.rollout, { ...groupMeta(t, iteration), reward: rewards.total }, adjoint)
    )
})

export const trajectories = Node.make({
  name: "trajectories",
  doc: "the recorded rollouts as one trajectory table (nothing when the rollouts were not recorded)",
  inputs: { runs: Port.of<SamplerRuns>() },
  run: ({ runs }) =>
    NodeContext.useSync(({ iteration }) => {
      const recorded = runs.filter((r) => r.rollout.latents !== undefined)
      if (recorded.length === 0) return undefined
      let firstId = 0
      const tables = recorded.map((r) => {
        const t = toTrajectoryTable(r.rollout, { iteration, firstId })
        firstId += r.rollout.chains
        return t
      })
      return tables.length === 1 ? tables[0] : tables.reduce((a, b) => a.concat(b))
    })
})
