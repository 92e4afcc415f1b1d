/**
 * Exporting the fine-tuned policy: the exported ONNX, read back as a policy and sampled with the
 * evaluation's noise, gives the very ODE samples the run's evaluation scored — their rewards equal
 * the stored evaluation rewards bit for bit.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as ortWeb from "onnxruntime-web"
import { beforeAll, describe, expect, it } from "vitest"
import { loadPromptSet } from "../../data/prompts.ts"
import { uniformGrid } from "../../diffusion/grids.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { ode } from "../../diffusion/samplers.ts"
import { runPipeline } from "../../kernel/run.ts"
import { readExport } from "../../models/exported.ts"
import { EvalSampleTable, EvalTable } from "../../nodes/eval/eval-tables.ts"
import { exportRun } from "../../pipelines/export.ts"
import { flowGrpo } from "../../pipelines/flow-grpo.ts"
import { sample, SampleTable } from "../../pipelines/sample.ts"
import { openStream } from "../../random/streams.ts"
import { outerRingReward } from "../../rewards/rewards.ts"
import { fromParquet } from "../../store/parquet.ts"
import { isolateCache, tempDir, tempRun, toyRl } from "../support/runs.ts"

const perPrompt = 32
let run = ""

beforeAll(async () => {
  isolateCache("export")
  run = tempRun("export")
  const set = { ...toyRl, iterations: "2", evalEvery: "1", evalSamplesPerPrompt: String(perPrompt) }
  await Effect.runPromise(runPipeline(flowGrpo, { out: run, progress: "none", seed: 4, set }))
}, 600_000)

describe("export", () => {
  it("writes a policy whose ODE samples on the evaluation's noise score exactly as the evaluation did", async () => {
    const out = path.join(tempDir("exported"), "policy")
    const files = await exportRun(run, { iteration: "last", ema: false, out })
    expect(files.map((f) => path.basename(f)).sort()).toEqual(["meta.json", "policy.onnx", "weights.safetensors"])
    const policy = await readExport(out, 2)
    const set = loadPromptSet("toy", false)
    const count = set.prompts.length * perPrompt
    const condition = new Int32Array(count).fill(-1)
    const r = await rollout({
      policy,
      sampler: ode,
      noise: 0,
      grid: uniformGrid(6),
      chains: count,
      initStream: (j) => openStream(["eval", "init", j]),
      stepStream: (j) => openStream(["eval", "step", j])
    })
    await policy.release()
    const rewards = await outerRingReward.score({
      dataset: "double-ring",
      samples: r.final,
      count,
      dim: 2,
      condition
    })
    const file = path.join(run, "eval/iter-000001.parquet")
    const { columns } = EvalTable.read(fromParquet(new Uint8Array(fs.readFileSync(file)), file), file)
    const stored = Array.from(columns.reward_ode as Float64Array).filter((_, i) => columns.steps[i] === 6)
    expect(Array.from(rewards)).toEqual(stored)
  })

  it("names what it cannot export", async () => {
    await expect(exportRun(run, { iteration: 7, ema: false, out: tempDir("never") })).rejects.toThrow(
      /iteration 7 is not one of them/
    )
    await expect(exportRun(run, { iteration: "last", ema: true, out: tempDir("never") })).rejects.toThrow(
      /no EMA of the weights/
    )
  })

  it("samples a run's policy: the same seed gives the same samples, another seed others", async () => {
    const dir = tempDir("samples")
    const options = { prompts: [], n: 64, sampler: "ode", steps: 6, noise: 0, threads: 2 } as const
    const at = async (seed: number, name: string, format: "png" | "parquet") =>
      fs.readFileSync(await sample(run, { ...options, seed, format, out: path.join(dir, name) }))
    const [a, b, c] = [await at(1, "a.png", "png"), await at(1, "b.png", "png"), await at(2, "c.png", "png")]
    expect(a.subarray(0, 8)).toEqual(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]))
    expect(a.equals(b)).toBe(true)
    expect(a.equals(c)).toBe(false)
    const table = await at(1, "a.parquet", "parquet")
    expect(SampleTable.read(fromParquet(new Uint8Array(table), "a.parquet"), "a.parquet").rows).toBe(64)
  })

  it("writes plain ONNX that a second runtime (onnxruntime-web, wasm) runs to the same outputs", async () => {
    const out = path.join(tempDir("exported-web"), "policy")
    await exportRun(run, { iteration: "last", ema: false, out })
    const rng = openStream(["web"])
    const B = 64
    const x = Float32Array.from({ length: B * 2 }, () => rng.normal())
    const policy = await readExport(out, 1)
    const native = await policy.predict(x, B, 0.5)
    await policy.release()
    ortWeb.env.wasm.numThreads = 1
    const session = await ortWeb.InferenceSession.create(new Uint8Array(fs.readFileSync(path.join(out, "policy.onnx"))))
    const web = (await session.run({
      x: new ortWeb.Tensor("float32", x, [B, 2]),
      t: new ortWeb.Tensor("float32", new Float32Array(B).fill(0.5), [B])
    })).f.data as Float32Array
    const scale = Math.max(...Array.from(native, Math.abs))
    const worst = native.reduce((m, v, i) => Math.max(m, Math.abs(v - web[i])), 0)
    // Two float32 kernel libraries (MLAS, wasm SIMD) sum in different orders: a few ulps of the output scale.
    expect(worst).toBeLessThan(4e-7 * Math.max(1, scale))
  })

  it("samples with the evaluation's noise to that evaluation's own ODE samples, bit for bit", async () => {
    const file = path.join(tempDir("eval-noise"), "samples.parquet")
    await sample(run, {
      prompts: [],
      n: perPrompt,
      sampler: "ode",
      steps: 6,
      noise: 0,
      seed: 0,
      format: "parquet",
      out: file,
      threads: 2,
      evalNoise: true
    })
    const mine = SampleTable.read(fromParquet(new Uint8Array(fs.readFileSync(file)), file), file).columns.x
    const stored = path.join(run, "eval-samples/iter-000001.parquet")
    const theirs = EvalSampleTable.read(fromParquet(new Uint8Array(fs.readFileSync(stored)), stored), stored).columns
    expect(Buffer.from((mine as Float32Array).buffer).equals(Buffer.from((theirs.x_ode as Float32Array).buffer))).toBe(
      true
    )
  })
})

describe("export of a forward-process run on the VP base", () => {
  it("exports the base its `process` setting named: its samples are the evaluation's, bit for bit", async () => {
    const { diffusionNft } = await import("../../pipelines/diffusion-nft.ts")
    const vpRun = tempRun("export-vp")
    const set = { ...toyRl, process: "vp", iterations: "2", evalEvery: "1", evalSamplesPerPrompt: String(perPrompt) }
    await Effect.runPromise(runPipeline(diffusionNft, { out: vpRun, progress: "none", seed: 4, set }))
    const out = path.join(tempDir("exported-vp"), "policy")
    await exportRun(vpRun, { iteration: "last", ema: false, out })
    const meta = JSON.parse(fs.readFileSync(path.join(out, "meta.json"), "utf8"))
    expect([meta.process, meta.parameterization]).toEqual(["vp", "epsilon"])
    const file = path.join(tempDir("eval-noise-vp"), "samples.parquet")
    const options = { prompts: [], n: perPrompt, sampler: "ode", steps: 6, noise: 0, seed: 0, threads: 2 } as const
    await sample(vpRun, { ...options, format: "parquet", out: file, evalNoise: true })
    const mine = SampleTable.read(fromParquet(new Uint8Array(fs.readFileSync(file)), file), file).columns.x
    const stored = path.join(vpRun, "eval-samples/iter-000001.parquet")
    const theirs = EvalSampleTable.read(fromParquet(new Uint8Array(fs.readFileSync(stored)), stored), stored).columns
    expect(Buffer.from((mine as Float32Array).buffer).equals(Buffer.from((theirs.x_ode as Float32Array).buffer))).toBe(
      true
    )
  }, 600_000)
})
