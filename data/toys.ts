/**
 * 2-D toy distributions, generated from a seeded stream. Labels name the mode a point came from.
 *  - double-ring: equal mass on the circles of radius 1 (label 0) and 2 (label 1), exact radii
 *    (the continuous version of the 256-atom ring of docs/algorithms.md §7.4);
 *  - gaussian-mixture: 8 equal-weight components centred on the circle of radius 2, std 0.15;
 *  - two-moons: the two interleaved half circles of scikit-learn's make_moons, noise std 0.05;
 *  - gmm25: 25 equal Gaussians at {−10, −5, 0, 5, 10}², covariance 0.3·I (the prior of
 *    GFNOrg/diffusion-finetuning `rtb_diffusion`; docs/algorithms.md §13.2), label = component k = 5·i + j.
 */
import type { RandomStream } from "../random/streams.ts"

export const TOYS = ["double-ring", "gaussian-mixture", "two-moons", "gmm25"] as const
export type Toy = (typeof TOYS)[number]

export interface Points {
  readonly x: Float32Array
  readonly label: Int32Array
}

const MIXTURE_COMPONENTS = 8
const MIXTURE_RADIUS = 2
const MIXTURE_STD = 0.15
const MOONS_NOISE = 0.05

/** gmm25's grid of means (component 5·i + j at (GRID[i], GRID[j])) and its per-coordinate variance. */
export const GMM25_GRID = [-10, -5, 0, 5, 10] as const
export const GMM25_VARIANCE = 0.3

export const sampleToy = (toy: Toy, n: number, rng: RandomStream): Points => {
  const x = new Float32Array(n * 2)
  const label = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    let px: number
    let py: number
    switch (toy) {
      case "double-ring": {
        label[i] = rng.uniform() < 0.5 ? 0 : 1
        const r = label[i] + 1
        const theta = 2 * Math.PI * rng.uniform()
        px = r * Math.cos(theta)
        py = r * Math.sin(theta)
        break
      }
      case "gaussian-mixture": {
        label[i] = rng.int(MIXTURE_COMPONENTS)
        const theta = (2 * Math.PI * label[i]) / MIXTURE_COMPONENTS
        px = MIXTURE_RADIUS * Math.cos(theta) + MIXTURE_STD * rng.normal()
        py = MIXTURE_RADIUS * Math.sin(theta) + MIXTURE_STD * rng.normal()
        break
      }
      case "gmm25": {
        label[i] = rng.int(25)
        const sd = Math.sqrt(GMM25_VARIANCE)
        px = GMM25_GRID[Math.floor(label[i] / 5)] + sd * rng.normal()
        py = GMM25_GRID[label[i] % 5] + sd * rng.normal()
        break
      }
      case "two-moons": {
        label[i] = rng.uniform() < 0.5 ? 0 : 1
        const theta = Math.PI * rng.uniform()
        px = label[i] === 0 ? Math.cos(theta) : 1 - Math.cos(theta)
        py = label[i] === 0 ? Math.sin(theta) : 0.5 - Math.sin(theta)
        px += MOONS_NOISE * rng.normal()
        py += MOONS_NOISE * rng.normal()
        break
      }
    }
    x[2 * i] = px
    x[2 * i + 1] = py
  }
  return { x, label }
}
