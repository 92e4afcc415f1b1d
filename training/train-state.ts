/**
 * The state every update starts from: the run's latest (weights with AdamW's moments) or, before the first
 * update, the base's weights with zero moments — one rule for the policy and the adjoint-matching updates.
 */
import type { ParamValues } from "../engine/params.ts"
import type { TrainState } from "../engine/train.ts"

/** What an update starts from: the weights, AdamW's moments when kept, the EMA when one runs. */
export interface PolicyState extends Omit<TrainState, "m" | "v">, Partial<Pick<TrainState, "m" | "v">> {
  readonly ema?: ParamValues
}

/** A copy of every parameter (an EMA or an old policy the trainer must not write into). */
export const copyOf = (p: ParamValues): ParamValues =>
  Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.slice()]))

const zeros = (p: ParamValues) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, new Float32Array(v.length)]))

/** The train state of `state`, or of the base's weights before the first update; a state without moments is refused. */
export const startState = (state: PolicyState | null, base: ParamValues): TrainState => {
  if (state === null) return { params: base, m: zeros(base), v: zeros(base), step: 0 }
  if (state.m === undefined || state.v === undefined) {
    throw new Error(
      `update: the state after optimizer step ${state.step} has no AdamW moments ` +
        "(a run keeps them in its newest checkpoint only)"
    )
  }
  return { params: state.params, m: state.m, v: state.v, step: state.step }
}
