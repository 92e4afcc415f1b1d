/**
 * The policy interface every model implements — analytic models with exact scores now, trained
 * networks later — so every pipeline runs on either.
 */
import type { Parameterization, Process } from "../diffusion/process.ts"

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
  readonly predict: (x: Float32Array, batch: number, t: number, condition?: Int32Array) => Float32Array | Promise<Float32Array>
}

export const latentSize = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)
