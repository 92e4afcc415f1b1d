/**
 * The iteration state of an RL run: policy weights, AdamW moments and step count, the per-prompt
 * reward statistics of the advantage normalizer, and the EMA of the weights when one is kept.
 * Checkpointed as safetensors + JSON, so a resumed run continues with exactly these values.
 */
import type { ParamValues } from "../../engine/params.ts"
import { readSafetensors, writeSafetensors } from "../../engine/safetensors.ts"
import type { TrainState } from "../../engine/train.ts"
import type { LossClipState } from "../../models/adjoint-loss.ts"
import { reusableBytes } from "../../store/commit.ts"

/** Running reward buffers keyed by prompt (DDPO) or by "prompt|step" (SDPO). */
export type TrackerState = Readonly<Record<string, ReadonlyArray<number>>>

/**
 * The optimizer moments are absent in a state decoded from an older checkpoint of a run that keeps
 * them only in the newest (retention): such a state can sample and evaluate, not train.
 */
export interface RlState extends Omit<TrainState, "m" | "v">, Partial<Pick<TrainState, "m" | "v">> {
  readonly tracker: TrackerState
  /** Exponential moving average of the weights (the policy evaluated), when `ema` > 0. */
  readonly ema?: ParamValues
  /** DiffusionNFT's sampling policy θ_old, soft-updated toward the weights after each iteration. */
  readonly old?: ParamValues
  /** Adjoint matching's loss-clipping threshold (an EMA; JSON keeps Infinity as null). */
  readonly lossClip?: LossClipState
}

// Checkpoint bytes go into buffers earlier commits handed back: the same ~30 MB every iteration.
const pack = (values: ParamValues) =>
  writeSafetensors(
    Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { data: v, shape: [v.length] }])),
    {},
    reusableBytes
  )
const unpack = (bytes: Uint8Array, file: string): ParamValues =>
  Object.fromEntries(Object.entries(readSafetensors(bytes, file).tensors).map(([k, v]) => [k, v.data]))

export const encodeRlState = (s: RlState | null): Record<string, Uint8Array | string> =>
  s === null
    ? { "state.json": JSON.stringify({ empty: true }) }
    : {
      "weights.safetensors": pack(s.params),
      ...(s.m === undefined ? {} : { "adam_m.safetensors": pack(s.m) }),
      ...(s.v === undefined ? {} : { "adam_v.safetensors": pack(s.v) }),
      ...(s.ema === undefined ? {} : { "ema.safetensors": pack(s.ema) }),
      ...(s.old === undefined ? {} : { "old.safetensors": pack(s.old) }),
      "state.json": JSON.stringify({
        step: s.step,
        tracker: s.tracker,
        ...(s.lossClip === undefined ? {} : { lossClip: s.lossClip })
      })
    }

export const decodeRlState = (files: Readonly<Record<string, Uint8Array>>): RlState | null => {
  const meta = JSON.parse(Buffer.from(files["state.json"]).toString("utf8")) as {
    empty?: boolean
    step: number
    tracker: TrackerState
    lossClip?: { value: number | null; batches: number }
  }
  if (meta.empty === true) return null
  return {
    params: unpack(files["weights.safetensors"], "weights.safetensors"),
    ...(files["adam_m.safetensors"] === undefined
      ? {}
      : { m: unpack(files["adam_m.safetensors"], "adam_m.safetensors") }),
    ...(files["adam_v.safetensors"] === undefined
      ? {}
      : { v: unpack(files["adam_v.safetensors"], "adam_v.safetensors") }),
    step: meta.step,
    tracker: meta.tracker,
    ...(meta.lossClip === undefined
      ? {}
      : { lossClip: { value: meta.lossClip.value ?? Number.POSITIVE_INFINITY, batches: meta.lossClip.batches } }),
    ...(files["ema.safetensors"] === undefined ? {} : { ema: unpack(files["ema.safetensors"], "ema.safetensors") }),
    ...(files["old.safetensors"] === undefined ? {} : { old: unpack(files["old.safetensors"], "old.safetensors") })
  }
}
