/**
 * The policy update's settings (what `runUpdates` and the update plans read), from an RL config and the
 * algorithm's variant: a file of its own, below both nodes/rl/update.ts and nodes/rl/update-batches.ts.
 */
import { type LogProbConvention, samplerLogProb } from "../../diffusion/samplers.ts"
import { cpsLogProbOf, type KlForm, type RlConfig } from "./config.ts"

/** The update's settings, from an RL config and the algorithm's variant. */
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

/** The update settings of an RL config; the log-prob convention is the training sampler's (§6.2). */
export const updateRequestOf = (c: RlConfig, rationorm: boolean): UpdateRequest => ({
  lr: c.lr,
  weightDecay: c.weightDecay,
  innerEpochs: c.innerEpochs,
  clipRange: c.clipRange,
  beta: c.beta,
  klForm: c.klForm,
  cfg: c.cfg,
  batchSize: c.batchSize,
  threads: c.threads,
  rationorm,
  logProb: samplerLogProb(c.sampler, cpsLogProbOf({ rationorm })),
  timestepFraction: c.timestepFraction,
  shuffleTimesteps: c.shuffleTimesteps,
  rescoreOldLogProb: c.rescoreOldLogProb,
  ema: c.ema,
  emaInterval: c.emaInterval
})
