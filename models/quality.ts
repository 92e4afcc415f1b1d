/**
 * Sample quality that is not the reward: the Fréchet distance between generated and held-out real
 * images in a classifier's last hidden layer (FID's construction, Heusel et al. 2017, arXiv
 * 1706.08500, eq. 6, with the MNIST classifier in place of Inception), and within-prompt diversity
 * (mean pairwise feature distance of the samples of one prompt).
 */
import { EigenvalueDecomposition, Matrix } from "ml-matrix"
import { Graph } from "../engine/graph.ts"
import { toOnnx } from "../engine/onnx.ts"
import { paramInputs, type ParamValues } from "../engine/params.ts"
import { EngineSession } from "../engine/session.ts"
import { type ClassifierConfig, classifierNet } from "./networks.ts"

/** Feature vectors: `count` rows of `width` floats. */
export interface Features {
  readonly data: Float64Array
  readonly count: number
  readonly width: number
}

/** A session computing a classifier's features: x [B, dim] → features [B, hidden]. */
export const featureSession = async (cfg: ClassifierConfig, params: ParamValues, threads: number) => {
  const net = classifierNet(cfg)
  const g = new Graph("classifier-features")
  const p = paramInputs(g, net.specs)
  g.output("features", net.features(p, g.input("x", "float32", ["B", cfg.dim])))
  return EngineSession.fromBytes("classifier-features", toOnnx(g, { initializers: params }), { threads })
}

/** The features of `count` images (pixels in [0, 1], `dim` each), in chunks of 1,000. */
export const featuresOf = async (
  session: EngineSession,
  x: Float32Array,
  count: number,
  dim: number
): Promise<Features> => {
  let data = new Float64Array(0)
  let width = 0
  for (let start = 0; start < count; start += 1000) {
    const n = Math.min(1000, count - start)
    const out = await session.run({ x: { data: x.subarray(start * dim, (start + n) * dim), dims: [n, dim] } })
    const f = out.features.data as Float32Array
    if (start === 0) {
      width = f.length / n
      data = new Float64Array(count * width)
    }
    data.set(f, start * width)
  }
  return { data, count, width }
}

/** The rows of `f` at `rows`. */
export const rowsOf = (f: Features, rows: ReadonlyArray<number>): Features => {
  const data = new Float64Array(rows.length * f.width)
  rows.forEach((r, j) => data.set(f.data.subarray(r * f.width, (r + 1) * f.width), j * f.width))
  return { data, count: rows.length, width: f.width }
}

/** Mean, centred features A (width × count, row-major, so Σ = A Aᵀ / (n − 1)), tr Σ, and Σ when count > width. */
export interface FeatureStats {
  readonly mean: Float64Array
  readonly a: Float64Array
  readonly width: number
  readonly count: number
  readonly trace: number
  readonly cov: Float64Array | undefined
}

/*
 * The products below are plain row-major loops with contiguous inner loops, several times faster than
 * ml-matrix's `mmul` on these shapes (docs/performance.md); ml-matrix keeps the eigendecompositions.
 */

/** C (n × m) += Σᵢ outer(A[i, :], B[i, :]) for A (w × n) and B (w × m): C = AᵀB. */
const transposeTimes = (a: Float64Array, b: Float64Array, w: number, n: number, m: number): Float64Array => {
  const c = new Float64Array(n * m)
  for (let i = 0; i < w; i++) {
    for (let p = 0; p < n; p++) {
      const v = a[i * n + p]
      if (v === 0) continue
      const row = p * m
      for (let q = 0; q < m; q++) c[row + q] += v * b[i * m + q]
    }
  }
  return c
}

/** S (w × w) times A (w × n). */
const times = (s: Float64Array, a: Float64Array, w: number, n: number): Float64Array => {
  const out = new Float64Array(w * n)
  for (let i = 0; i < w; i++) {
    for (let k = 0; k < w; k++) {
      const v = s[i * w + k]
      for (let q = 0; q < n; q++) out[i * n + q] += v * a[k * n + q]
    }
  }
  return out
}

/** A Aᵀ / scale for A (r × n): dot products of rows (symmetric, each computed once). */
const rowGram = (a: Float64Array, r: number, n: number, scale: number): Float64Array => {
  const g = new Float64Array(r * r)
  for (let i = 0; i < r; i++) {
    for (let j = i; j < r; j++) {
      let dot = 0
      for (let q = 0; q < n; q++) dot += a[i * n + q] * a[j * n + q]
      g[i * r + j] = g[j * r + i] = dot / scale
    }
  }
  return g
}

export const featureStats = (f: Features): FeatureStats => {
  const { width, count } = f
  const mean = new Float64Array(width)
  for (let i = 0; i < count; i++) for (let k = 0; k < width; k++) mean[k] += f.data[i * width + k] / count
  const a = new Float64Array(width * count)
  let trace = 0
  for (let i = 0; i < count; i++) {
    for (let k = 0; k < width; k++) {
      const v = f.data[i * width + k] - mean[k]
      a[k * count + i] = v
      trace += (v * v) / (count - 1)
    }
  }
  // A large reference set (the real test digits) keeps Σ so each comparison costs width² · n, not width · n · n_ref.
  const cov = count > width ? rowGram(a, width, count, count - 1) : undefined
  return { mean, a, width, count, trace, cov }
}

/** Σ √λ over the eigenvalues of a symmetric positive semi-definite n × n matrix (rounding negatives to 0). */
const traceOfSqrt = (m: Float64Array, n: number) =>
  new EigenvalueDecomposition(Matrix.from1DArray(n, n, m), { assumeSymmetric: true }).realEigenvalues.reduce(
    (s, v) => s + Math.sqrt(Math.max(v, 0)),
    0
  )

/**
 * ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½ with unbiased sample covariances Σᵢ = AᵢAᵢᵀ/(nᵢ − 1). The
 * eigenvalues of Σ₁Σ₂ are those of A₁ᵀΣ₂A₁/(n₁ − 1) and the squared singular values of A₁ᵀA₂/√((n₁−1)(n₂−1)),
 * so the trace term is an n₁ × n₁ (or n₁ × n₂) eigenproblem instead of a width × width matrix square root
 * (FID's `sqrtm`): exact, also when n < width and the covariances are singular.
 */
export const frechetDistance = (x: FeatureStats, y: FeatureStats): number => {
  if (x.width !== y.width) throw new Error(`frechetDistance: feature widths ${x.width} and ${y.width} differ`)
  if (x.count < 2 || y.count < 2) return Number.NaN
  const w = x.width
  let meanTerm = 0
  for (let k = 0; k < w; k++) meanTerm += (x.mean[k] - y.mean[k]) ** 2
  let cross: number
  if (y.cov !== undefined && x.count <= y.count) {
    const m = transposeTimes(x.a, times(y.cov, x.a, w, x.count), w, x.count, x.count)
    cross = traceOfSqrt(m.map((v) => v / (x.count - 1)), x.count)
  } else {
    // C = A₁ᵀA₂ / √((n₁−1)(n₂−1)), then the smaller of C Cᵀ (rows of C) and Cᵀ C (rows of Cᵀ).
    const scale = Math.sqrt((x.count - 1) * (y.count - 1))
    const [n, m] = [x.count, y.count]
    const c = n <= m ? transposeTimes(x.a, y.a, w, n, m) : transposeTimes(y.a, x.a, w, m, n)
    const rows = Math.min(n, m)
    cross = traceOfSqrt(rowGram(c, rows, Math.max(n, m), scale * scale), rows)
  }
  return meanTerm + x.trace + y.trace - 2 * cross
}

/** Mean Euclidean distance over the distinct pairs of rows of each group, averaged over groups of ≥ 2 rows. */
export const diversity = (f: Features, groups: ReadonlyArray<ReadonlyArray<number>>): number => {
  let total = 0
  let counted = 0
  for (const rows of groups) {
    if (rows.length < 2) continue
    let sum = 0
    for (let i = 0; i < rows.length; i++) {
      for (let j = i + 1; j < rows.length; j++) {
        let d2 = 0
        for (let k = 0; k < f.width; k++) d2 += (f.data[rows[i] * f.width + k] - f.data[rows[j] * f.width + k]) ** 2
        sum += Math.sqrt(d2)
      }
    }
    total += sum / ((rows.length * (rows.length - 1)) / 2)
    counted++
  }
  return counted === 0 ? Number.NaN : total / counted
}
