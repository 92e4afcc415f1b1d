/**
 * The policy the sampler loop calls (diffusion/rollout.ts): raw outputs f(x, t, c) of a model.
 * models/ implements it — analytic models with exact scores and trained networks alike — so every
 * sampler and pipeline runs on either.
 */
import type { Parameterization, Process } from "./process.ts"

export interface Policy {
  readonly name: string
  /** Shape of one latent; d = product of the shape. */
  readonly shape: ReadonlyArray<number>
  /** The process the model was built (or trained) for. */
  readonly process: Process
  /** What the raw output f means: flow velocity, noise, or clean sample. */
  readonly parameterization: Parameterization
  /**
   * Raw outputs f(x, t, c) for `batch` latents stored row-major in `x` (batch × d), all at time t.
   * `condition` holds one class index per latent for conditional models.
   */
  readonly predict: (
    x: Float32Array,
    batch: number,
    t: number,
    condition?: Int32Array
  ) => Float32Array | Promise<Float32Array>
}

export const latentSize = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)
