/**
 * Restoring RL entries from a stored run, for replay: trajectories from `trajectories/iter-N.parquet`,
 * rewards and advantages from its reward and advantage columns, the updated state from
 * `checkpoints/iter-N/`. Where the run did not keep an iteration's trajectories (retention) they
 * return undefined, and the kernel regenerates rollout, rewards and advantages from the run's state.
 * Latents, coefficients and advantages come back bit-exactly either way, so a replay of an unchanged
 * run from `update` reproduces its weights.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { mnistCondition } from "../../data/prompts.ts"
import { predictions } from "../../diffusion/process.ts"
import type { StepRecord } from "../../diffusion/rollout.ts"
import type { RestoreContext } from "../../kernel/node.ts"
import { iterFile } from "../../kernel/run-folder.ts"
import { AdjointTrajectoryTable, TrajectoryTable } from "../../schemas/trajectory.ts"
import { fromParquet } from "../../store/parquet.ts"
import type { Adjoints } from "../../training/adjoints.ts"
import type { BaseModel } from "../setup/base-model.ts"
import type { Advantages } from "./advantages.ts"
import type { Rewards } from "./rewards.ts"
import type { Trajectories } from "./rollout.ts"
import { decodeRlState } from "./state.ts"
import type { UpdateResult } from "./update.ts"

const trajectoryFile = (ctx: RestoreContext) =>
  path.join(ctx.source, "trajectories", `${iterFile(ctx.iteration)}.parquet`)

/** Whether the stored run kept this iteration's trajectories (retention); if not, replay regenerates them. */
const kept = (ctx: RestoreContext) => ctx.has(trajectoryFile(ctx))

const table = (ctx: RestoreContext) => {
  const file = trajectoryFile(ctx)
  const { rows, columns: c, shapes } = TrajectoryTable.read(
    fromParquet(ctx.read(file), file),
    file
  )
  const N = c.step.reduce((m, v) => Math.max(m, v), 0) + 1
  return { rows, c, shape: shapes.latent, N, n: rows / N }
}

const tensorValues = (v: Float32Array | { values: Float32Array } | null): Float32Array =>
  v === null ? new Float32Array(0) : v instanceof Float32Array ? v : v.values

const masked = (v: Float64Array | { values: Float64Array; valid: Uint8Array } | null, i: number) =>
  v === null ? Number.NaN : v instanceof Float64Array ? v[i] : v.valid[i] ? v.values[i] : Number.NaN

export const restoreTrajectories = async (ctx: RestoreContext): Promise<Trajectories | undefined> => {
  if (!kept(ctx)) return undefined
  const base = ctx.outputs.base as BaseModel
  const { c, shape, N, n } = table(ctx)
  const d = shape.reduce((a, b) => a * b, 1)
  const latents = new Float32Array((N + 1) * n * d)
  const x0Pred = new Float32Array(N * n * d)
  const logProb = new Float64Array(N * n)
  const latent = c.latent as Float32Array
  // x_N is on each trajectory's last row (and, in version-1 files, on every row).
  const nextLatent = tensorValues(c.next_latent)
  const x0 = c.x0_pred as Float32Array
  for (let j = 0; j < n; j++) {
    for (let k = 0; k < N; k++) {
      const row = j * N + k
      latents.set(latent.subarray(row * d, (row + 1) * d), k * n * d + j * d)
      x0Pred.set(x0.subarray(row * d, (row + 1) * d), k * n * d + j * d)
      logProb[k * n + j] = masked(c.log_prob as never, row)
      if (k === N - 1) latents.set(nextLatent.subarray(row * d, (row + 1) * d), N * n * d + j * d)
    }
  }
  const steps: Array<StepRecord> = Array.from({ length: N }, (_, k) => ({
    step: k,
    t: c.t[k],
    tNext: c.t_next[k],
    a: c.a[k],
    b: c.b[k],
    s: c.std[k],
    x0: predictions(base.process, base.parameterization, c.t[k]).x0,
    logProb: "gaussian"
  }))
  const prompt = Array.from({ length: n }, (_, j) => (c.prompt === null ? null : c.prompt[j * N]))
  const groupId = Int32Array.from({ length: n }, (_, j) => c.group_id[j * N])
  const groups = groupId.reduce((m, v) => Math.max(m, v), 0) + 1
  return {
    rollout: { chains: n, d, shape, steps, final: latents.slice(N * n * d), latents, x0Pred, logProb },
    prompts: {
      prompt,
      promptId: Int32Array.from({ length: n }, (_, j) => c.prompt_id[j * N]),
      condition: Int32Array.from(
        prompt,
        (p, j) => (base.net.classes > 0 ? mnistCondition(p ?? "", `trajectory ${j}`) : -1)
      ),
      groupId,
      member: Int32Array.from({ length: n }, (_, j) => c.member[j * N]),
      groups,
      groupSize: n / groups
    },
    steps,
    process: base.process,
    trainable: steps.filter((s) => s.s > 0).map((s) => s.step)
  }
}

/** The adjoints of a stored adjoint-matching iteration, from its `adjoint` / `next_adjoint` columns. */
export const restoreAdjoints = async (ctx: RestoreContext): Promise<Adjoints | undefined> => {
  if (!kept(ctx)) return undefined
  const file = trajectoryFile(ctx)
  const { rows, columns: c, shapes } = AdjointTrajectoryTable.read(
    fromParquet(ctx.read(file), file),
    file
  )
  const N = c.step.reduce((m, v) => Math.max(m, v), 0) + 1
  const n = rows / N
  const d = shapes.latent.reduce((a, b) => a * b, 1)
  // Nullable tensor columns read back as { values, valid } when some rows are null, plain values otherwise.
  const masked = (v: Float32Array | { values: Float32Array; valid: Uint8Array } | null) =>
    v === null ? { values: new Float32Array(0), valid: new Uint8Array(rows) } : v instanceof Float32Array
      ? { values: v, valid: new Uint8Array(rows).fill(1) }
      : v
  const adjoint = masked(c.adjoint)
  const next = masked(c.next_adjoint)
  let from = 0
  while (from < N && adjoint.valid[from] === 0) from++
  const values = Array.from({ length: N - from + 1 }, () => new Float32Array(n * d))
  for (let j = 0; j < n; j++) {
    for (let k = from; k < N; k++) {
      values[k - from].set(adjoint.values.subarray((j * N + k) * d, (j * N + k + 1) * d), j * d)
    }
    values[N - from].set(next.values.subarray((j * N + N - 1) * d, (j * N + N) * d), j * d)
  }
  return { from, chains: n, values }
}

export const restoreRewards = async (ctx: RestoreContext): Promise<Rewards | undefined> => {
  if (!kept(ctx)) return undefined
  const { c, N, n } = table(ctx)
  const total = Float64Array.from({ length: n }, (_, j) => masked(c.reward as never, j * N + N - 1))
  return { total, raw: { stored: total } }
}

const checkpoint = (ctx: RestoreContext) => {
  const dir = path.join(ctx.source, "checkpoints", iterFile(ctx.iteration))
  if (!ctx.has(path.join(dir, "state.json"))) {
    throw new Error(
      `${dir} is missing: the stored run did not keep the state of iteration ${ctx.iteration} (keep=minimal?)`
    )
  }
  return decodeRlState(Object.fromEntries(fs.readdirSync(dir).map((f) => [f, ctx.read(path.join(dir, f))])))
}

export const restoreAdvantages = async (ctx: RestoreContext): Promise<Advantages | undefined> => {
  if (!kept(ctx)) return undefined
  const { c, N, n } = table(ctx)
  return {
    perTrajectory: Float64Array.from({ length: n }, (_, j) => masked(c.advantage as never, j * N)),
    tracker: checkpoint(ctx)?.tracker ?? {},
    zeroStdGroups: 0
  }
}

export const restoreUpdate = async (ctx: RestoreContext): Promise<UpdateResult> => {
  const state = checkpoint(ctx)
  if (state === null) throw new Error(`checkpoint of iteration ${ctx.iteration} holds no policy state`)
  return { state, metrics: {} }
}
