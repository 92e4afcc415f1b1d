/**
 * The settings of the forward-process pipelines (DiffusionNFT, AWM; docs/algorithms.md §14): the RL settings
 * that mean something without log-probabilities, the base's process as a setting (both bases, one
 * pipeline), the VP grid's spacing, and DiffusionNFT's β.
 */
import { GRID_SPACINGS } from "../../diffusion/grids.ts"
import { type ConfigOf, omitSettings, Setting } from "../../schemas/settings.ts"
import { grpoSettings, type NoiseKey, type RlDefaults, rlSettings } from "./config.ts"

export const PROCESSES = ["rf", "vp"] as const

/**
 * The forward-process pipelines' defaults: ODE rollouts of 10 steps, groups of 8, AdamW 3e-5, ⌊0.99·N⌋ grid
 * times per sample drawn afresh (NVlabs' timestep_fraction), and each algorithm's KL coefficient to the base.
 */
export const forwardDefaults = (beta: number): RlDefaults<"noiseLevel"> => ({
  sampler: "ode",
  noise: 0,
  noiseKey: "noiseLevel",
  steps: 10,
  // A ratio clip only AWM has (`awmSettings`); the shared defaults need a value.
  clipRange: 0,
  beta,
  lr: 3e-5,
  groupSize: 8,
  timestepFraction: 0.99,
  shuffleTimesteps: true
})

export const forwardSettings = <K extends NoiseKey>(d: RlDefaults<K>) => {
  const kept = omitSettings(rlSettings(d), [
    "clipRange",
    "klForm",
    "shuffleTimesteps",
    "rescoreOldLogProb",
    "ema",
    "emaInterval"
  ])
  return {
    ...kept,
    ...grpoSettings(false),
    process: Setting.literal(
      PROCESSES,
      "rf",
      "the base fine-tuned: rf (rectified flow, velocity) or vp (discrete VP, ε); the loss is written for either"
    ),
    spacing: Setting.literal(GRID_SPACINGS, "trailing", "VP: DDIM timestep spacing of the rollout and training grid")
  }
}

/** AWM's PPO clip of the matching likelihood ratio (DiffusionNFT has no ratio). */
export const awmSettings = {
  clipRange: Setting.number(1e-3, "PPO clip range ε of the matching likelihood ratio", { min: 0 })
}

/** DiffusionNFT's own setting. */
export const nftSettings = {
  nftBeta: Setting.number(
    1,
    "DiffusionNFT β: the implicit policies v± sit β from the old policy (NVlabs default 1; 0.1 in its OCR config)",
    { min: 1e-6 }
  )
}

/** The config of a forward-process pipeline: its settings' values (noise under `noiseLevel`), NFT's β if set. */
export type ForwardPipelineConfig =
  & ConfigOf<ReturnType<typeof forwardSettings<"noiseLevel">>>
  & Partial<ConfigOf<typeof nftSettings>>
  & Partial<ConfigOf<typeof awmSettings>>
  & { readonly eta?: number; readonly guard?: boolean }
