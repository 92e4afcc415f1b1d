/**
 * `etaflow sample <run | exported policy> --prompts 0,3,7 --n 8 --sampler ode --steps 10 [--eta]
 * [--seed] --out grid.png [--format parquet]`: samples of a policy — a run's (exported on the fly)
 * or an exported one — for given digits. The initial and step noise of sample j depend only on
 * (seed, j), so the grids of a base and a fine-tuned policy for the same seed compare pixel for pixel.
 * MNIST gives a PNG grid (one row per prompt); 2-D toys a PNG scatter of [−3, 3]²; `--format parquet`
 * the samples as a table (sample, condition, x). VP samples on trailing grids (from t = 999).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { latentToPixels } from "../data/mnist.ts"
import { loadPromptSet } from "../data/prompts.ts"
import { shiftGrid, trailingGrid, uniformGrid } from "../diffusion/grids.ts"
import { rollout } from "../diffusion/rollout.ts"
import { type SamplerName, samplerOf, SAMPLERS } from "../diffusion/samplers.ts"
import { UsageError } from "../kernel/errors.ts"
import { readExport } from "../models/exported.ts"
import { openStream } from "../random/streams.ts"
import { grayPng, tile } from "../report/png.ts"
import { Column, TableDef } from "../schemas/columns.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { toParquet } from "../store/parquet.ts"
import { exportRun } from "./export.ts"

export interface SampleOptions {
  /** Class indices (digits) to sample, one row each; empty for unconditional models. */
  readonly prompts: ReadonlyArray<number>
  readonly n: number
  readonly sampler: SamplerName
  readonly steps: number
  readonly noise: number
  readonly seed: number
  readonly out: string
  readonly format: "png" | "parquet"
  readonly threads: number
  /**
   * Sample the evaluation's set instead: every held-out prompt `n` times, laid out and seeded as the
   * run's evaluation does — at its step count, the evaluation's own ODE samples, bit for bit.
   */
  readonly evalNoise?: boolean
}

/** Which chains to sample: their conditions, and the noise key of chain j. */
const layoutOf = (options: SampleOptions, conditional: boolean) => {
  if (options.evalNoise === true) {
    const set = loadPromptSet(conditional ? "mnist" : "toy", conditional)
    const count = set.prompts.length * options.n
    return {
      condition: Int32Array.from({ length: count }, (_, i) => set.conditions[i % set.prompts.length]),
      key: (j: number) => ["eval", j] as const
    }
  }
  const rows = conditional ? options.prompts : [-1]
  return {
    // Column k of every row starts from the same noise, so rows (prompts) compare too.
    condition: Int32Array.from({ length: rows.length * options.n }, (_, j) => rows[Math.floor(j / options.n)]),
    key: (j: number) => ["sample", options.seed, j % options.n] as const
  }
}

export const SampleTable = new TableDef("sample", 1, {
  sample: Column.int32("sample index j (its noise depends only on the seed and j)"),
  condition: Column.int32("class index of the prompt (−1: unconditional)"),
  x: Column.tensor("the final sample")
})

/** A policy folder: an export, or a run's policy exported into a temporary folder. */
const policyDir = async (source: string) => {
  if (fs.existsSync(path.join(source, "meta.json"))) return source
  if (!fs.existsSync(path.join(source, "manifest.json"))) {
    throw new UsageError({ message: `sample: ${source} is neither a run folder nor an exported policy` })
  }
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-sample-")), "policy")
  await exportRun(source, { iteration: "last", ema: false, out: dir })
  return dir
}

/** ["eval", j] → ["eval", kind, j] (the evaluation's streams); ["sample", seed, k] → ["sample", seed, kind, k]. */
const streamKey = (key: ReadonlyArray<string | number>, kind: string) => [...key.slice(0, -1), kind, key.at(-1)!]

/** A 256 × 256 image of 2-D points in [−3, 3]², white on black. */
const scatter = (points: Float32Array) => {
  const side = 256
  const pixels = new Float32Array(side * side)
  for (let i = 0; i + 1 < points.length; i += 2) {
    const x = Math.floor(((points[i] + 3) / 6) * side)
    const y = Math.floor(((3 - points[i + 1]) / 6) * side)
    if (x >= 0 && x < side && y >= 0 && y < side) pixels[y * side + x] = 1
  }
  return { pixels, width: side, height: side }
}

/** Samples and writes them; returns the file written. */
export const sample = async (source: string, options: SampleOptions): Promise<string> => {
  const policy = await readExport(await policyDir(source), options.threads)
  const conditional = policy.shape.length > 1
  const info = SAMPLERS[options.sampler]
  if (!(info.processes as ReadonlyArray<string>).includes(policy.process.kind)) {
    throw new UsageError({ message: `sample: sampler ${options.sampler} is not defined for ${policy.process.name}` })
  }
  const { condition, key } = layoutOf(options, conditional)
  const chains = condition.length
  const grid = policy.process.kind === "rf" ? shiftGrid(uniformGrid(options.steps), 1) : trailingGrid(options.steps)
  const r = await rollout({
    policy,
    sampler: samplerOf(options.sampler),
    noise: options.noise,
    grid,
    chains,
    condition: conditional ? condition : undefined,
    initStream: (j) => openStream(streamKey(key(j), "init")),
    stepStream: (j) => openStream(streamKey(key(j), "step"))
  })
  await policy.release()
  const d = r.d
  if (options.format === "parquet") {
    const table = SampleTable.build(chains, {
      sample: Int32Array.from({ length: chains }, (_, j) => (options.evalNoise === true ? j : j % options.n)),
      condition,
      x: r.final
    }, {
      x: policy.shape
    })
    writeFileAtomic(options.out, toParquet(table))
    return options.out
  }
  const image = conditional
    ? tile(
      Array.from({ length: chains }, (_, j) => Array.from(r.final.subarray(j * d, (j + 1) * d), latentToPixels)),
      policy.shape[0],
      options.n
    )
    : scatter(r.final)
  writeFileAtomic(options.out, grayPng(image.pixels, image.width, image.height))
  return options.out
}
