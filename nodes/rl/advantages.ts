/**
 * Advantages: normalized rewards, one per trajectory.
 *  - groupAdvantages (GRPO family, §4.2, §5.1): (R − mean_group) / (std + ε) with the group's
 *    population std (Flow-GRPO, Precise; ε = 1e-4) or unbiased std (DanceGRPO, MixGRPO; ε = 1e-8),
 *    or the std of the whole batch (`globalStd`, Flow-GRPO's SD3 default);
 *  - promptTrackerAdvantages (DDPO, §8): a per-prompt buffer of past rewards that persists across
 *    iterations (buffer 16); below `minCount` stored rewards, the current batch's mean and std.
 * The tracker's buffers are part of the iteration state, so resume continues them exactly.
 */
import { Effect } from "effect"
import { Node, Port } from "../../kernel/node.ts"
import type { DenseRewards } from "./dense-rewards.ts"
import type { Rewards } from "./rewards.ts"
import type { Trajectories } from "./rollout.ts"
import type { RlState, TrackerState } from "./state.ts"

export interface Advantages {
  readonly perTrajectory: Float64Array
  readonly tracker: TrackerState
  /** Groups whose rewards were all equal (no learning signal). */
  readonly zeroStdGroups: number
}

export interface GroupNormalization {
  readonly std: "population" | "unbiased"
  readonly globalStd: boolean
  readonly eps: number
}

/** Mean and (population or unbiased) standard deviation. */
export const meanStd = (xs: ArrayLike<number>, unbiased: boolean) => {
  const n = xs.length
  let m = 0
  for (let i = 0; i < n; i++) m += xs[i]
  m /= n
  let v = 0
  for (let i = 0; i < n; i++) v += (xs[i] - m) ** 2
  return { mean: m, std: Math.sqrt(v / Math.max(unbiased ? n - 1 : n, 1)) }
}

/** GRPO advantages of rewards laid out in consecutive groups of `size`. */
export const groupNormalize = (rewards: Float64Array, size: number, norm: GroupNormalization) => {
  const out = new Float64Array(rewards.length)
  const global = meanStd(rewards, norm.std === "unbiased").std
  let zeroStdGroups = 0
  for (let g = 0; g * size < rewards.length; g++) {
    const group = rewards.subarray(g * size, (g + 1) * size)
    const { mean, std } = meanStd(group, norm.std === "unbiased")
    if (std === 0) zeroStdGroups++
    for (let i = 0; i < group.length; i++) {
      out[g * size + i] = (group[i] - mean) / ((norm.globalStd ? global : std) + norm.eps)
    }
  }
  return { advantages: out, zeroStdGroups }
}

/** DDPO's per-prompt stat tracker (ddpo_pytorch stat_tracking.py): returns advantages and the new buffers. */
export const trackPrompts = (
  rewards: Float64Array,
  keys: ReadonlyArray<string>,
  state: TrackerState,
  buffer: number,
  minCount: number
) => {
  const next: Record<string, Array<number>> = Object.fromEntries(Object.entries(state).map(([k, v]) => [k, [...v]]))
  const batch = meanStd(rewards, false)
  const out = new Float64Array(rewards.length)
  for (const key of new Set(keys)) {
    const rows = keys.flatMap((k, i) => (k === key ? [i] : []))
    const buf = (next[key] ??= [])
    // Current rewards are appended first, then the statistics are taken (as in the reference).
    for (const i of rows) buf.push(rewards[i])
    if (buf.length > buffer) buf.splice(0, buf.length - buffer)
    const { mean, std } = buf.length < minCount ? batch : meanStd(buf, false)
    for (const i of rows) out[i] = (rewards[i] - mean) / (std + 1e-6)
  }
  return { advantages: out, tracker: next }
}

/** Group advantages with the algorithm's std and ε; whether the std is the batch's is a setting. */
export const groupAdvantages = (norm: Omit<GroupNormalization, "globalStd">) =>
  Node.make({
    name: "advantages",
    doc: "per-group normalized rewards (GRPO)",
    inputs: {
      rewards: Port.of<Rewards>(),
      trajectories: Port.of<Trajectories>(),
      state: Port.of<RlState | null>(),
      config: Port.of<{ readonly globalStd: boolean }>()
    },
    run: ({ rewards, trajectories, state, config }) =>
      Effect.sync((): Advantages => {
        const { advantages, zeroStdGroups } = groupNormalize(rewards.total, trajectories.prompts.groupSize, {
          ...norm,
          globalStd: config.globalStd
        })
        return { perTrajectory: advantages, tracker: state?.tracker ?? {}, zeroStdGroups } satisfies Advantages
      }),
    metrics: (a) => ({ zero_std_groups: a.zeroStdGroups })
  })

export const promptTrackerAdvantages = Node.make({
  name: "advantages",
  doc: "rewards normalized by a running per-prompt tracker (DDPO)",
  inputs: {
    rewards: Port.of<Rewards>(),
    trajectories: Port.of<Trajectories>(),
    state: Port.of<RlState | null>(),
    config: Port.of<{ readonly trackerBuffer: number; readonly trackerMinCount: number }>()
  },
  run: ({ rewards, trajectories, state, config }) =>
    Effect.sync((): Advantages => {
      const keys = trajectories.prompts.prompt.map((p, i) => p ?? `prompt${trajectories.prompts.promptId[i]}`)
      const { advantages, tracker } = trackPrompts(
        rewards.total,
        keys,
        state?.tracker ?? {},
        config.trackerBuffer,
        config.trackerMinCount
      )
      return { perTrajectory: advantages, tracker, zeroStdGroups: 0 } satisfies Advantages
    })
})

/** Per-step advantages (SDPO), n × N. */
export interface StepAdvantages {
  readonly perStep: Float64Array
  readonly tracker: TrackerState
}

/**
 * SDPO's per-(prompt, step) tracker (§9.3; sdpo stat_tracking.py): DDPO's tracker keyed by
 * "prompt|step", fed with the returns of every trajectory; below `minCount` stored values it uses
 * the current batch's statistics at that step.
 */
export const trackStepPrompts = (
  returns: Float64Array,
  steps: number,
  prompts: ReadonlyArray<string>,
  state: TrackerState,
  buffer: number,
  minCount: number
) => {
  const n = prompts.length
  const out = new Float64Array(n * steps)
  let tracker = state
  for (let k = 0; k < steps; k++) {
    const atK = Float64Array.from({ length: n }, (_, j) => returns[j * steps + k])
    const r = trackPrompts(atK, prompts.map((p) => `${p}|${k}`), tracker, buffer, minCount)
    r.advantages.forEach((a, j) => (out[j * steps + k] = a))
    tracker = r.tracker
  }
  return { advantages: out, tracker }
}

export const stepPromptTrackerAdvantages = (buffer: number, minCount: number) =>
  Node.make({
    name: "advantages",
    doc: "returns normalized by a running per-(prompt, step) tracker (SDPO)",
    inputs: {
      rewards: Port.of<DenseRewards>(),
      trajectories: Port.of<Trajectories>(),
      state: Port.of<RlState | null>()
    },
    run: ({ rewards, trajectories, state }) =>
      Effect.sync((): StepAdvantages => {
        const keys = trajectories.prompts.prompt.map((p, i) => p ?? `prompt${trajectories.prompts.promptId[i]}`)
        const { advantages, tracker } = trackStepPrompts(
          rewards.returns,
          trajectories.steps.length,
          keys,
          state?.tracker ?? {},
          buffer,
          minCount
        )
        return { perStep: advantages, tracker }
      })
  })
