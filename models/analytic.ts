/**
 * Models with exact outputs, no training (docs/algorithms.md §3.5, §7.4, §12.7): the posterior mean
 * x̂0 = E[x0 | x_t] of known data under the path x_t = α x0 + σ ε, turned into the model's
 * parameterization by inverting the one conversion of diffusion/process.ts.
 */
import type { Drift } from "../diffusion/adjoint.ts"
import type { Policy } from "../diffusion/policy.ts"
import { type Parameterization, predictions, type Process } from "../diffusion/process.ts"

/** Builds a policy from a posterior-mean function `x̂0(x_row) → out_row`. */
const fromPosteriorMean = (
  name: string,
  shape: ReadonlyArray<number>,
  process: Process,
  parameterization: Parameterization,
  /** Given α(t), σ(t) once per call, the posterior mean of one row of x written into `out`. */
  posteriorMean: (alpha: number, sigma: number) => (x: Float32Array, row: number, out: Float64Array) => void
): Policy => {
  const d = shape.reduce((a, b) => a * b, 1)
  return {
    name,
    shape,
    process,
    parameterization,
    predict: (x, batch, t) => {
      const alpha = process.alpha(t)
      const sigma = process.sigma(t)
      const c = predictions(process, parameterization, t).x0
      const x0 = new Float64Array(d)
      const out = new Float32Array(batch * d)
      const rowMean = posteriorMean(alpha, sigma)
      for (let row = 0; row < batch; row++) {
        rowMean(x, row, x0)
        // x̂0 = c.x·x + c.f·f  ⇒  f = (x̂0 − c.x·x) / c.f
        for (let i = 0; i < d; i++) out[row * d + i] = (x0[i] - c.x * x[row * d + i]) / c.f
      }
      return out
    }
  }
}

/** Data N(μ0, s0²) independently per coordinate: x̂0 = μ0 + α s0² (x − α μ0) / (α² s0² + σ²). */
export const gaussianData = (
  opts: { mean: number; std: number; dim: number; process: Process; parameterization: Parameterization }
): Policy =>
  fromPosteriorMean(
    `gaussian(${opts.mean},${opts.std})`,
    [opts.dim],
    opts.process,
    opts.parameterization,
    (alpha, sigma) => {
      const s2 = opts.std * opts.std
      const gain = (alpha * s2) / (alpha * alpha * s2 + sigma * sigma)
      const d = opts.dim
      return (x, row, out) => {
        for (let i = 0; i < d; i++) out[i] = opts.mean + gain * (x[row * d + i] - alpha * opts.mean)
      }
    }
  )

/**
 * The same Gaussian model as a Drift (forward and exact VJP), for the adjoint recursion: f is affine
 * and diagonal in x, ∂f_i/∂x_i = (gain − c.x)/c.f with x̂0 = c.x·x + c.f·f, so J_fᵀ v = that slope · v.
 */
export const gaussianDrift = (
  opts: { mean: number; std: number; dim: number; process: Process; parameterization: Parameterization }
): Drift => {
  const policy = gaussianData(opts)
  return {
    forward: async (x, batch, t) => policy.predict(x, batch, t),
    vjp: async (_x, _batch, t, v) => {
      const [alpha, sigma] = [opts.process.alpha(t), opts.process.sigma(t)]
      const s2 = opts.std * opts.std
      const gain = (alpha * s2) / (alpha * alpha * s2 + sigma * sigma)
      const c = predictions(opts.process, opts.parameterization, t).x0
      const slope = (gain - c.x) / c.f
      return Float32Array.from(v, (w) => slope * w)
    }
  }
}

export interface Component {
  readonly weight: number
  readonly mean: ReadonlyArray<number>
  /** Isotropic std of the component; 0 makes it a point mass (an atom of a weighted point set). */
  readonly std: number
}

/**
 * Gaussian mixture (and, with std 0, a weighted point set): responsibilities by log-sum-exp softmax
 * of log w_k + log N(x; α m_k, (α² s_k² + σ²) I), then the weighted component posterior means.
 * When every variance vanishes (σ → 0 on atoms) the nearest atom is returned (§12.7).
 */
export const mixture = (
  name: string,
  components: ReadonlyArray<Component>,
  process: Process,
  parameterization: Parameterization
): Policy => {
  const d = components[0].mean.length
  const K = components.length
  const means = Float64Array.from(components.flatMap((c) => [...c.mean]))
  const logW = Float64Array.from(components, (c) => Math.log(c.weight))
  const s2 = Float64Array.from(components, (c) => c.std * c.std)
  const logits = new Float64Array(K)
  return fromPosteriorMean(name, [d], process, parameterization, (alpha, sigma) => {
    const v = Float64Array.from(s2, (s) => alpha * alpha * s + sigma * sigma)
    const gain = Float64Array.from(s2, (s, k) => (v[k] === 0 ? 0 : (alpha * s) / v[k]))
    const logNorm = Float64Array.from(v, (vk, k) => logW[k] - 0.5 * d * Math.log(vk))
    const degenerate = v.every((vk) => vk === 0)
    return (x, row, out) => {
      if (degenerate) {
        // Every component is a point mass and σ = 0: the posterior is the nearest atom.
        let nearest = 0
        let nearestSq = Infinity
        for (let k = 0; k < K; k++) {
          let sq = 0
          for (let i = 0; i < d; i++) sq += (x[row * d + i] - alpha * means[k * d + i]) ** 2
          if (sq < nearestSq) [nearest, nearestSq] = [k, sq]
        }
        for (let i = 0; i < d; i++) out[i] = means[nearest * d + i]
        return
      }
      let best = -Infinity
      for (let k = 0; k < K; k++) {
        let sq = 0
        for (let i = 0; i < d; i++) {
          const r = x[row * d + i] - alpha * means[k * d + i]
          sq += r * r
        }
        logits[k] = logNorm[k] - sq / (2 * v[k])
        if (logits[k] > best) best = logits[k]
      }
      out.fill(0)
      let total = 0
      for (let k = 0; k < K; k++) {
        const w = Math.exp(logits[k] - best)
        if (w === 0) continue
        total += w
        for (let i = 0; i < d; i++) {
          out[i] += w * (means[k * d + i] + gain[k] * (x[row * d + i] - alpha * means[k * d + i]))
        }
      }
      for (let i = 0; i < d; i++) out[i] /= total
    }
  })
}

/**
 * The equal-mass double ring of §7.4: 128 equally spaced atoms on radius 1 and 128 on radius 2,
 * weight 1/256 each, exact posterior mean under rectified flow.
 */
export const doubleRing = (process: Process, parameterization: Parameterization, atomsPerRing = 128): Policy => {
  const atoms: Array<Component> = []
  for (const radius of [1, 2]) {
    for (let k = 0; k < atomsPerRing; k++) {
      const theta = (2 * Math.PI * k) / atomsPerRing
      atoms.push({ weight: 1 / (2 * atomsPerRing), mean: [radius * Math.cos(theta), radius * Math.sin(theta)], std: 0 })
    }
  }
  return mixture("double-ring", atoms, process, parameterization)
}
