/**
 * The `tilt` task's reward (docs/algorithms.md §13): r(x) = log Σ_{c∈T} p(c | x) under the reward
 * classifier, T the target digits. Fine-tuning the unconditional base p_base toward it has a known
 * optimum: the KL-regularised target p_base(x) exp(λ r(x)) at λ = 1 is p_base(x) p(T | x) ∝ p(x | T),
 * the real digits of T (when the classifier is the data's p(c | x)).
 */
import { latentsToPixels } from "../data/mnist.ts"
import type { EngineSession } from "../engine/session.ts"
import type { RewardModel } from "./rewards.ts"

/** The digits a `target` setting names: one digit (`7`), a list (`0,3`), `even` or `odd`. */
export const targetDigits = (spec: string): Array<number> => {
  const s = spec.trim()
  if (s === "even") return [0, 2, 4, 6, 8]
  if (s === "odd") return [1, 3, 5, 7, 9]
  const parts = s.split(",").map((p) => p.trim())
  if (s === "" || !parts.every((p) => /^\d$/.test(p))) {
    throw new Error(`target "${spec}" should be digits 0–9 separated by commas (7, 0,3), even or odd`)
  }
  const digits = [...new Set(parts.map(Number))].sort((a, b) => a - b)
  if (digits.length === 10) throw new Error(`target "${spec}" names every digit: the reward would be 0 everywhere`)
  return digits
}

/** log Σ_{c∈T} exp(logp_c) of one row, shifted by its largest term so no target digit underflows. */
export const logTargetProb = (
  logp: ArrayLike<number>,
  row: number,
  classes: number,
  target: ReadonlyArray<number>
): number => {
  let top = -Infinity
  for (const c of target) top = Math.max(top, logp[row * classes + c])
  if (top === -Infinity) return top
  let sum = 0
  for (const c of target) sum += Math.exp(logp[row * classes + c] - top)
  return top + Math.log(sum)
}

/**
 * The weights w_c = p(c | x) / p(T | x) over T (0 elsewhere), row-major count × classes: the gradient
 * of log p(T | x) is Σ_c w_c ∇ log p(c | x), so the classifier's one-hot gradient graph takes them as is.
 */
export const targetWeights = (
  logp: ArrayLike<number>,
  count: number,
  classes: number,
  target: ReadonlyArray<number>
): Float32Array => {
  const w = new Float32Array(count * classes)
  for (let i = 0; i < count; i++) {
    const lse = logTargetProb(logp, i, classes, target)
    for (const c of target) w[i * classes + c] = Math.exp(logp[i * classes + c] - lse)
  }
  return w
}

/** The classifier's log-probabilities of pixel rows (count × classes). */
export const classifierLogProbs = async (
  session: EngineSession,
  pixels: Float32Array,
  count: number,
  dim: number
): Promise<Float32Array> => (await session.run({ x: { data: pixels, dims: [count, dim] } })).logp.data as Float32Array

/** The `target` reward: log p(T | x) of each MNIST sample's pixels, whatever its condition. */
export const targetReward = (session: EngineSession, classes: number, target: ReadonlyArray<number>): RewardModel => ({
  name: "target",
  score: async (ctx) => {
    const logp = await classifierLogProbs(session, latentsToPixels(ctx.samples), ctx.count, ctx.dim)
    return Float64Array.from({ length: ctx.count }, (_, i) => logTargetProb(logp, i, classes, target))
  }
})
