/**
 * The policy update's settings (what `runUpdates` and the update plans read); nodes/rl/update.ts makes
 * them from an RL config and the algorithm's variant.
 */
import type { LogProbConvention } from "../diffusion/samplers.ts"

/** flow_grpo's code KL (Δ × the paper's, the default) or the paper's per-element form (§4.2). */
export const KL_FORMS = ["code", "paper"] as const
export type KlForm = (typeof KL_FORMS)[number]

export interface UpdateRequest {
  readonly lr: number
  readonly weightDecay: number
  readonly innerEpochs: number
  readonly clipRange: number
  readonly beta: number
  /** flow_grpo's code KL (Δ·paper, the default) or the paper's per-element form (§4.2). */
  readonly klForm: KlForm
  readonly cfg: number
  /** Trajectories (PPO) or pairs (SDPO) per minibatch. */
  readonly batchSize: number
  readonly threads: number
  /** Precise's ratio normalisation (§7.5). */
  readonly rationorm: boolean
  /** The log-prob convention of the training sampler (FlowCPS's is unnormalised, §6.2). */
  readonly logProb: LogProbConvention
  /** Fraction of the N steps each trajectory trains, and whether they are drawn at random. */
  readonly timestepFraction: number
  readonly shuffleTimesteps: boolean
  /** Re-score old log-probs at θ_old with the loss's graph instead of using the stored ones. */
  readonly rescoreOldLogProb: boolean
  /** EMA decay of the weights (0: no EMA) and optimizer steps between its updates. */
  readonly ema: number
  readonly emaInterval: number
}
