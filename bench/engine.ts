/**
 * Engine throughput on this machine: peak SGEMM through onnxruntime, MLP forward and train-step
 * GFLOP/s over (d, H, B), the train step as a fraction of peak, the fixed cost of a tiny run, the
 * in-graph vs JS AdamW update, and the same train step on tfjs' CPU backend for a side-by-side ratio.
 * FLOPs count 2·m·n·k per matrix product; a train step counts 3× its forward (forward + two
 * backward products per layer).
 */
import { createRequire } from "node:module"
import { Graph } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import { initParams, type ParamSpec } from "../engine/params.ts"
import { EngineSession } from "../engine/session.ts"
import { DEFAULT_ADAM } from "../engine/train-step.ts"
import { Trainer } from "../engine/train.ts"
import { openStream } from "../random/streams.ts"
import type { BenchLine } from "./line.ts"

const THREADS = 2
export const median = (xs: ReadonlyArray<number>) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const timeIt = async (f: () => Promise<unknown>, repeats: number, warmup = 1) => {
  for (let i = 0; i < warmup; i++) await f()
  const times: Array<number> = []
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now()
    await f()
    times.push((performance.now() - t0) / 1000)
  }
  return median(times)
}

const randomArray = (n: number, key: string) => openStream(["bench", key]).fillNormal(new Float32Array(n))

const mlpSpecs = (d: number, H: number): Array<ParamSpec> => {
  const widths = [d, H, H, H, d]
  return widths.slice(1).flatMap((w, i) =>
    [
      { name: `l${i}.w`, shape: [widths[i], w], init: { std: 1 / Math.sqrt(widths[i]) } },
      { name: `l${i}.b`, shape: [w], init: "zeros" }
    ] satisfies Array<ParamSpec>
  )
}
const mlpForward = (p: Record<string, ReturnType<Graph["input"]>>, x: ReturnType<Graph["input"]>) => {
  let h = x
  for (let i = 0; i < 4; i++) {
    h = op.add(op.matmul(h, p[`l${i}.w`]), p[`l${i}.b`])
    if (i < 3) h = op.silu(h)
  }
  return h
}
const mlpFlops = (d: number, H: number, B: number) => 2 * B * (d * H + 2 * H * H + H * d)

export const peakSgemm = async () => {
  const n = 2048
  const g = new Graph("sgemm")
  g.output("c", op.matmul(g.input("a", "float32", [n, n]), g.input("b", "float32", [n, n])))
  const s = await EngineSession.create(g, { threads: THREADS })
  const a = { data: randomArray(n * n, "a"), dims: [n, n] }
  const b = { data: randomArray(n * n, "b"), dims: [n, n] }
  const t = await timeIt(() => s.run({ a, b }), 5)
  return (2 * n ** 3) / t / 1e9
}

const tinyOverhead = async () => {
  const g = new Graph("tiny")
  g.output("y", op.add(g.input("x", "float32", [1]), 1))
  const s = await EngineSession.create(g, { threads: THREADS })
  const x = { data: Float32Array.of(1), dims: [1] }
  for (let i = 0; i < 200; i++) await s.run({ x })
  const n = 2000
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await s.run({ x })
  return ((performance.now() - t0) / n) * 1000
}

const forwardGflops = async (d: number, H: number, B: number) => {
  const specs = mlpSpecs(d, H)
  const g = new Graph("mlp-forward")
  const p = Object.fromEntries(specs.map((s) => [s.name, g.input(s.name, "float32", s.shape)]))
  g.output("y", mlpForward(p, g.input("x", "float32", ["B", d])))
  const s = await EngineSession.create(g, { threads: THREADS })
  const params = initParams(specs, openStream(["bench", "init"]))
  const feeds = {
    ...Object.fromEntries(specs.map((sp) => [sp.name, { data: params[sp.name], dims: sp.shape }])),
    x: { data: randomArray(B * d, "x"), dims: [B, d] }
  }
  const t = await timeIt(() => s.run(feeds), B >= 4096 && H >= 1024 ? 3 : 7)
  return { gflops: mlpFlops(d, H, B) / t / 1e9, rows: B / t }
}

const trainer = (d: number, H: number, update: "graph" | "js") =>
  Trainer.create({
    name: "mlp-train",
    specs: mlpSpecs(d, H),
    threads: THREADS,
    update,
    adam: DEFAULT_ADAM,
    init: initParams(mlpSpecs(d, H), openStream(["bench", "init"])),
    loss: (g, p) => {
      const x = g.input("x", "float32", ["B", d])
      const y = g.input("y", "float32", ["B", d])
      return { loss: op.reduceMean(op.square(op.sub(mlpForward(p, x), y)), [0, 1]) }
    }
  })

const trainStepSeconds = async (d: number, H: number, B: number, update: "graph" | "js" = "graph") => {
  const tr = await trainer(d, H, update)
  const batch = {
    x: { data: randomArray(B * d, "x"), dims: [B, d] },
    y: { data: randomArray(B * d, "y"), dims: [B, d] }
  }
  const t = await timeIt(() => tr.step(batch), B >= 4096 && H >= 1024 ? 3 : 7)
  await tr.release()
  return t
}

const tfjsTrainStep = async (d: number, H: number, B: number) => {
  // The CommonJS bundle of @tensorflow/tfjs registers the CPU kernels and every gradient.
  const require = createRequire(import.meta.url)
  const tf = require("@tensorflow/tfjs") as typeof import("@tensorflow/tfjs")
  await tf.setBackend("cpu")
  const specs = mlpSpecs(d, H)
  const init = initParams(specs, openStream(["bench", "init"]))
  const vars = specs.map((s) => tf.variable(tf.tensor(init[s.name], s.shape as Array<number>)))
  const opt = tf.train.adam(1e-3)
  const x = tf.tensor(randomArray(B * d, "x"), [B, d])
  const y = tf.tensor(randomArray(B * d, "y"), [B, d])
  const step = () => {
    opt.minimize(
      () => {
        let h: ReturnType<typeof tf.matMul> = x
        for (let i = 0; i < 4; i++) {
          h = tf.add(tf.matMul(h, vars[2 * i]), vars[2 * i + 1])
          if (i < 3) h = tf.mul(h, tf.sigmoid(h))
        }
        return tf.mean(tf.square(tf.sub(h, y))) as never
      },
      false,
      vars
    )
    return Promise.resolve()
  }
  return timeIt(step, 2, 1)
}

export const engineBench = async (emit: (line: BenchLine) => void): Promise<void> => {
  const lines = { push: emit }
  lines.push({ name: "engine_threads", value: THREADS, unit: "threads" })
  const peak = await peakSgemm()
  lines.push({
    name: "peak_sgemm_gflops",
    value: peak,
    unit: "GFLOP/s",
    detail: "2048³ MatMul through onnxruntime-node"
  })
  lines.push({
    name: "tiny_run_overhead_us",
    value: await tinyOverhead(),
    unit: "us",
    detail: "session.run of one scalar Add"
  })
  for (const d of [2, 784]) {
    for (const H of [256, 1024]) {
      for (const B of [256, 4096]) {
        const tag = `d${d}_h${H}_b${B}`
        const f = await forwardGflops(d, H, B)
        lines.push({ name: `forward_gflops_${tag}`, value: f.gflops, unit: "GFLOP/s" })
        lines.push({ name: `forward_rows_per_s_${tag}`, value: f.rows, unit: "rows/s" })
        // The machine's speed drifts: the fraction is taken against peak SGEMM measured around this
        // timing (the higher of before and after), never against a slow moment's peak.
        const before = await peakSgemm()
        const t = await trainStepSeconds(d, H, B)
        const localPeak = Math.max(before, await peakSgemm())
        const gflops = (3 * mlpFlops(d, H, B)) / t / 1e9
        lines.push({ name: `train_step_gflops_${tag}`, value: gflops, unit: "GFLOP/s" })
        lines.push({ name: `train_step_rows_per_s_${tag}`, value: B / t, unit: "rows/s" })
        lines.push({
          name: `train_step_fraction_of_peak_${tag}`,
          value: gflops / localPeak,
          unit: "ratio",
          detail: `peak ${localPeak.toFixed(0)} GFLOP/s`
        })
      }
    }
  }
  // Interleaved, median of three each: the two are compared in the same minutes.
  const graphTimes: Array<number> = []
  const jsTimes: Array<number> = []
  for (let r = 0; r < 3; r++) {
    graphTimes.push(await trainStepSeconds(784, 1024, 256, "graph"))
    jsTimes.push(await trainStepSeconds(784, 1024, 256, "js"))
  }
  const [inGraph, inJs] = [median(graphTimes), median(jsTimes)]
  lines.push({ name: "adam_in_graph_step_ms_d784_h1024_b256", value: inGraph * 1e3, unit: "ms" })
  lines.push({ name: "adam_in_js_step_ms_d784_h1024_b256", value: inJs * 1e3, unit: "ms" })
  const tfjs = await tfjsTrainStep(784, 256, 256)
  const tfjsGflops = (3 * mlpFlops(784, 256, 256)) / tfjs / 1e9
  const ours = (3 * mlpFlops(784, 256, 256)) / (await trainStepSeconds(784, 256, 256)) / 1e9
  lines.push({
    name: "tfjs_cpu_train_step_gflops_d784_h256_b256",
    value: tfjsGflops,
    unit: "GFLOP/s",
    detail: "@tensorflow/tfjs-backend-cpu, same MLP and Adam"
  })
  lines.push({ name: "engine_over_tfjs_cpu_train_step_d784_h256_b256", value: ours / tfjsGflops, unit: "ratio" })
}
