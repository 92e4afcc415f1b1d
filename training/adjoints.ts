/**
 * The adjoints of an iteration (docs/algorithms.md §10) as the adjoint-matching update reads them, and
 * the row helpers both the adjoint stage and the update use.
 */
import type { Rollout } from "../diffusion/rollout.ts"

export interface Adjoints {
  /** First step of the window. */
  readonly from: number
  readonly chains: number
  /** a_from … a_N (index k − from), each chains × d. */
  readonly values: ReadonlyArray<Float32Array>
  /**
   * f_base(x_k) of every chain for k = from … N − 1 (index k − from), where the recursion computed it;
   * absent in adjoints restored from a stored run (`baseOutputsOf` recomputes them the same way).
   */
  readonly baseOutputs?: ReadonlyArray<Float32Array>
}

/** x_k of every chain (chains × d), a view into the recorded rollout. */
export const latentsAt = (r: Rollout, k: number): Float32Array =>
  r.latents!.subarray(k * r.chains * r.d, (k + 1) * r.chains * r.d)

/**
 * ‖row‖ of each of the `rows` rows of `values` (rows × d). A function of its own so the engine optimises
 * the loop (inlined in a closure it allocated a number per element: docs/performance.md).
 */
export const rowNorms = (values: Float32Array, rows: number, d: number): Float64Array => {
  const out = new Float64Array(rows)
  for (let j = 0; j < rows; j++) {
    let sq = 0
    for (let q = j * d; q < (j + 1) * d; q++) sq += values[q] * values[q]
    out[j] = Math.sqrt(sq)
  }
  return out
}
