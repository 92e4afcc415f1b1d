import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { runPipeline } from "../../kernel/run.ts"
import { loadOnnxModel } from "../../models/external.ts"
import { pretrain } from "../../pipelines/pretrain.ts"
import { rewardModel } from "../../pipelines/reward-model.ts"
import { isolateCache, lastMetrics, tempRun } from "../support/runs.ts"

const tmp = tempRun
const metricsOf = lastMetrics

beforeAll(() => {
  isolateCache("pretrain")
})

const ring = {
  dataset: "double-ring",
  points: "4000",
  hidden: "128",
  blocks: "2",
  steps: "800",
  batch: "256",
  lr: "3e-3",
  evalSamples: "1000",
  evalSteps: "20",
  cfg: "1"
}

// Bounds that a broken model fails: measured trained / after one training step (untrained).
// rf: radial error 0.077 / 0.35, outer mass 0.47 / 0.42; vp: radial error 0.21 / 9.6, outer mass 0.52 / 0.99.
const bounds = {
  rf: { radial: 0.1, mass: 0.06 },
  vp: { radial: 0.3, mass: 0.1 }
} as const

const passes = (m: Record<string, number>, b: { radial: number; mass: number }) =>
  m["radial_error.s20"] < b.radial && Math.abs(m["outer_mass.s20"] - 0.5) < b.mass

describe("pretrain", () => {
  it(
    "learns a rectified-flow model of the double ring whose ODE samples lie near the rings with the mass split",
    async () => {
      const dir = tmp("pt")
      await Effect.runPromise(runPipeline(pretrain, { out: dir, progress: "none", set: ring }))
      const m = metricsOf(dir)
      expect(passes(m, bounds.rf)).toBe(true)
      expect(m.loss).toBeGreaterThan(0)
      for (const f of ["policy.onnx", "weights.safetensors", "samples.parquet"]) {
        expect(fs.existsSync(path.join(dir, f))).toBe(true)
      }
    }
  )

  it(
    "learns an ε model under VP (scaled-linear) whose DDIM samples from the top of the schedule lie near the rings",
    async () => {
      const dir = tmp("pt-vp")
      await Effect.runPromise(runPipeline(pretrain, { out: dir, progress: "none", set: { ...ring, process: "vp" } }))
      expect(passes(metricsOf(dir), bounds.vp)).toBe(true)
    }
  )

  it.each(["rf", "vp"] as const)("has quality bounds an untrained %s model fails", async (process) => {
    const dir = tmp("pt-untrained")
    await Effect.runPromise(
      runPipeline(pretrain, { out: dir, progress: "none", set: { ...ring, process, steps: "1" } })
    )
    expect(passes(metricsOf(dir), bounds[process])).toBe(false)
  })

  it("reuses the cached model on a second run: same weights, bit for bit", async () => {
    const [a, b] = [tmp("pt-a"), tmp("pt-b")]
    await Effect.runPromise(runPipeline(pretrain, { out: a, progress: "none", set: { ...ring, steps: "50" } }))
    const cached = fs.readdirSync(process.env.ETAFLOW_CACHE!).filter((d) => d.startsWith("base-model-")).length
    await Effect.runPromise(runPipeline(pretrain, { out: b, progress: "none", set: { ...ring, steps: "50" } }))
    expect(fs.readdirSync(process.env.ETAFLOW_CACHE!).filter((d) => d.startsWith("base-model-")).length).toBe(cached)
    expect(
      fs.readFileSync(path.join(b, "weights.safetensors")).equals(fs.readFileSync(path.join(a, "weights.safetensors")))
    ).toBe(true)
    expect(metricsOf(b)).toEqual(metricsOf(a))
  })
})

describe("reward-model", () => {
  it(
    "trains an MNIST classifier with a useful held-out accuracy and exports ONNX that loads against its contract",
    async () => {
      const dir = tmp("rm")
      await Effect.runPromise(
        runPipeline(rewardModel, { out: dir, progress: "none", set: { hidden: "128", epochs: "2", shift: "0" } })
      )
      expect(metricsOf(dir).test_accuracy).toBeGreaterThan(0.9)
      const session = await loadOnnxModel(path.join(dir, "classifier.onnx"), {
        inputs: { x: { dtype: "float32", shape: ["batch", 784] } },
        outputs: { logp: { dtype: "float32", shape: ["batch", 10] } }
      }, 1)
      const out = await session.run({ x: { data: new Float32Array(784), dims: [1, 784] } })
      const p = Array.from(out.logp.data as Float32Array, Math.exp)
      expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5)
    }
  )

  it(
    "trains the weak proxy of over-optimisation studies: digits and width in the metrics, well below the full model",
    async () => {
      // The proxy's settings (PROXY_REQUEST); the same width on the whole split is what it falls short of.
      const proxy = { role: "proxy", hidden: "32", layers: "1", trainDigits: "300", epochs: "20", shift: "0" }
      const [weak, full] = [tmp("proxy"), tmp("proxy-full")]
      await Effect.runPromise(runPipeline(rewardModel, { out: weak, progress: "none", set: proxy }))
      await Effect.runPromise(
        runPipeline(rewardModel, { out: full, progress: "none", set: { ...proxy, trainDigits: "0", epochs: "2" } })
      )
      const [w, f] = [metricsOf(weak), metricsOf(full)]
      expect(w.proxy_train_digits).toBe(300)
      expect(w.proxy_hidden).toBe(32)
      // Measured 0.75–0.85 on 300 digits against ≥ 0.9 on 8,000: a proxy that is right often, but not always.
      expect(w.test_accuracy).toBeGreaterThan(0.6)
      expect(w.test_accuracy).toBeLessThan(f.test_accuracy - 0.05)
      expect(f.proxy_train_digits).toBeGreaterThan(7000)
    },
    120_000
  )
})
