/**
 * What the report shows of a run's evaluations and folder: the base model's and the fine-tuned
 * policy's ODE samples from the same noise at the training step count (best and last evaluated
 * iterations) — the samples a user ships — and the disk use of the run.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { latentToPixels } from "../data/mnist.ts"
import type { MetricRow } from "../schemas/manifest.ts"
import { fromParquet } from "../store/parquet.ts"
import { grayPng, tile } from "./png.ts"
import { scatter } from "./svg.ts"

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** Columns per prompt and prompts shown in a grid. */
const COLS = 6
const ROWS = 10

const image = (x: Float32Array, d: number, side: number, picks: ReadonlyArray<number>, alt: string) => {
  const images = picks.map((i) => Array.from(x.subarray(i * d, (i + 1) * d), latentToPixels))
  const { pixels, width, height } = tile(images, side, COLS)
  return `<img class="samples" alt="${esc(alt)}" src="data:image/png;base64,${
    grayPng(pixels, width, height).toString("base64")
  }"/>`
}

const gridOf = (read: Read, file: string, label: string) => {
  const table = fromParquet(read(file), file)
  const tuned = table.getChild("x_ode")!.data[0].children[0].values as Float32Array
  const base = table.getChild("x_base_ode")!.data[0].children[0].values as Float32Array
  const prompts = (table.getChild("prompt")?.toArray() ?? []) as Array<string | null>
  const n = table.numRows
  const d = tuned.length / n
  if (d === 2) {
    const points = (x: Float32Array) => ({
      x: Array.from({ length: n }, (_, i) => x[2 * i]),
      y: Array.from({ length: n }, (_, i) => x[2 * i + 1])
    })
    return `<figure>${
      scatter(`${label}: base vs fine-tuned ODE samples`, [{ name: "base", ...points(base) }, {
        name: "fine-tuned",
        ...points(tuned)
      }])
    }</figure>`
  }
  // The first COLS samples of each of the first ROWS prompts (samples cycle through the prompts).
  const distinct = Math.max(1, new Set(prompts).size)
  const picks = Array.from(
    { length: Math.min(ROWS, distinct) },
    (_, r) => Array.from({ length: COLS }, (_, c) => r + c * distinct)
  )
    .flat()
    .filter((i) => i < n)
  const side = Math.round(Math.sqrt(d))
  const labels = picks.filter((_, k) => k % COLS === 0).map((i) => esc(prompts[i] ?? "")).join(" · ")
  return `<figure>${image(base, d, side, picks, `base, ${label}`)} ${
    image(tuned, d, side, picks, `fine-tuned, ${label}`)
  }` +
    `<figcaption>${
      esc(label)
    }: base (left) vs fine-tuned (right), ODE samples from the same noise; rows ${labels}</figcaption></figure>`
}

/** A stored file's bytes, checked against the hash its commit recorded (store/integrity.ts). */
export type Read = (file: string) => Uint8Array

/** Base vs fine-tuned ODE grids of the best and last evaluated iterations (by ODE improvement). */
export const odeGrids = (dir: string, rows: ReadonlyArray<MetricRow>, steps: number, read: Read): Array<string> => {
  const folder = path.join(dir, "eval-samples")
  if (!fs.existsSync(folder)) return []
  const files = fs.readdirSync(folder).filter((f) => f.endsWith(".parquet")).sort()
  const iterationOf = (f: string) => Number(/iter-(\d+)/.exec(f)![1])
  const improvement = new Map(
    rows.filter((r) => r.name === `eval.improvement.s${steps}`).map((r) => [r.iteration, r.value])
  )
  const best = files.reduce<string | undefined>(
    (
      b,
      f
    ) => (b === undefined ||
        (improvement.get(iterationOf(f)) ?? -Infinity) > (improvement.get(iterationOf(b)) ?? -Infinity)
      ? f
      : b),
    undefined
  )
  const last = files.at(-1)
  return [...new Set([best, last])].filter((f): f is string => f !== undefined).map((f) =>
    gridOf(read, path.join(folder, f), `iteration ${iterationOf(f)}${f === best ? " (best)" : ""}, ${steps} steps`)
  )
}

const sizeOf = (p: string): number => {
  const stat = fs.statSync(p)
  return stat.isDirectory() ? fs.readdirSync(p).reduce((sum, f) => sum + sizeOf(path.join(p, f)), 0) : stat.size
}

/** The run folder's disk use, in total and by entry, as a table. */
export const diskUse = (dir: string): string => {
  const entries = fs.readdirSync(dir).map((f) => ({ f, size: sizeOf(path.join(dir, f)) })).sort((a, b) =>
    b.size - a.size
  )
  const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`
  const total = entries.reduce((s, e) => s + e.size, 0)
  return `<table><tr><th>total</th><td>${mb(total)}</td></tr>${
    entries.map((e) => `<tr><th>${esc(e.f)}</th><td>${mb(e.size)}</td></tr>`).join("")
  }</table>`
}
