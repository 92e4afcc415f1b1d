/** Time grids t_0 > t_1 > … > t_N of a sampler (docs/algorithms.md §1.1, §1.3). */

/** `linspace(start, end, n + 1)`. */
export const uniformGrid = (n: number, start = 1, end = 0): Array<number> =>
  Array.from({ length: n + 1 }, (_, i) => (i === n ? end : start + ((end - start) * i) / n))

/** Static shift `S s / (1 + (S − 1) s)` of a flow grid (SD3; DanceGRPO/MixGRPO use S = 3). */
export const shiftGrid = (grid: ReadonlyArray<number>, shift: number): Array<number> =>
  grid.map((s) => (shift * s) / (1 + (shift - 1) * s))

/**
 * DDIM "leading" timesteps for a discrete schedule of `trainSteps` (diffusers, §1.1):
 * `reverse(arange(S) · (N // S)) + offset`, then the previous timestep `t − N // S` clamped to ≥ 0
 * as ddpo-pytorch and SDPO do, so the last step lands on ᾱ_0 rather than on 1.
 */
export const leadingGrid = (steps: number, trainSteps = 1000, offset = 1): Array<number> => {
  const ratio = Math.floor(trainSteps / steps)
  const ts = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + offset)
  return [...ts, Math.max(ts[steps - 1] - ratio, 0)]
}

/**
 * DDIM "trailing" timesteps (diffusers `timestep_spacing = "trailing"`, §1.1):
 * `round(arange(N, 0, −N/S)) − 1`, so the first step starts at the top of the schedule (t = N − 1)
 * whatever S; the last step goes to 0 as in `leadingGrid`. Few-step sampling needs it: the leading
 * grid's single step starts at t = 1, where the "sample" is the starting noise. With the cosine
 * schedule ᾱ_999 ≈ 2e-9, so an ε-model's x̂0 at the first trailing step divides by α ≈ 5e-5 and the
 * ODE diverges (measured on the double ring): use scaled-linear (the default, SD's) there.
 */
export const trailingGrid = (steps: number, trainSteps = 1000): Array<number> => {
  const ts = Array.from({ length: steps }, (_, i) => roundHalfEven(trainSteps - (i * trainSteps) / steps) - 1)
  return [...ts, 0]
}

/** numpy's `round`: halves go to the even neighbour (937.5 → 938, 812.5 → 812). */
const roundHalfEven = (v: number): number => {
  const r = Math.round(v)
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
}

export const GRID_SPACINGS = ["leading", "trailing"] as const
export type GridSpacing = (typeof GRID_SPACINGS)[number]

export const checkGrid = (grid: ReadonlyArray<number>): void => {
  if (grid.length < 2) throw new Error(`a time grid needs at least 2 points, got ${grid.length}`)
  for (let k = 0; k + 1 < grid.length; k++) {
    if (!(grid[k + 1] < grid[k])) {
      throw new Error(`time grid must decrease: step ${k} goes from ${grid[k]} to ${grid[k + 1]}`)
    }
  }
}
