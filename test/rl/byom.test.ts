/**
 * Bring your own model: a policy exported by PyTorch (test/fixtures/models) fine-tuned through LoRA by
 * flow-grpo on the tilt task, its run folder holding adapters only, and its export — the adapters merged
 * into the network — sampling the evaluation's own ODE samples bit for bit; and every way an imported
 * file can be wrong refused with exit 2, naming what and where, before any folder exists.
 */
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import onnxProto from "onnx-proto"
import * as ortWeb from "onnxruntime-web"
import { beforeAll, describe, expect, it } from "vitest"
import { uniformGrid } from "../../diffusion/grids.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { ode } from "../../diffusion/samplers.ts"
import { readSafetensors } from "../../engine/safetensors.ts"
import { EngineSession } from "../../engine/session.ts"
import { runPipeline } from "../../kernel/run.ts"
import { readExport } from "../../models/exported.ts"
import { EvalSampleTable } from "../../nodes/eval/eval-tables.ts"
import { exportRun } from "../../pipelines/export.ts"
import { flowGrpo } from "../../pipelines/flow-grpo.ts"
import { openStream } from "../../random/streams.ts"
import { fromParquet } from "../../store/parquet.ts"
import { isolateCache, lastMetrics, tempDir, tempRun, toyRl } from "../support/runs.ts"

const FIXTURES = path.resolve("test/fixtures/models")
const DIT = path.join(FIXTURES, "tiny-dit.onnx")
const perPrompt = 2
const steps = 4
const loraRun = {
  task: "tilt",
  base: DIT,
  lora: "4",
  iterations: "2",
  evalEvery: "1",
  steps: String(steps),
  evalSteps: String(steps),
  promptsPerIteration: "4",
  groupSize: "4",
  batchSize: "8",
  evalSamplesPerPrompt: String(perPrompt)
} as const

let run = ""

beforeAll(async () => {
  isolateCache("byom")
  run = tempRun("byom")
  await Effect.runPromise(runPipeline(flowGrpo, { out: run, progress: "none", seed: 3, set: loraRun }))
}, 900_000)

describe("a LoRA run on an imported PyTorch network", () => {
  it("keeps only the adapters in its checkpoints", () => {
    const file = path.join(run, "checkpoints/iter-000001/weights.safetensors")
    const { tensors } = readSafetensors(new Uint8Array(fs.readFileSync(file)), file)
    const names = Object.keys(tensors)
    expect(names.length).toBeGreaterThan(0)
    expect(names.every((n) => n.endsWith(".lora_A") || n.endsWith(".lora_B"))).toBe(true)
    expect(names).toContain("blocks.0.attn.qkv.weight.lora_A")
  })

  it("exports the merged network: its ODE samples on the evaluation's noise are the evaluation's", async () => {
    const out = path.join(tempDir("byom-export"), "policy")
    const files = (await exportRun(run, { iteration: "last", ema: false, out })).map((f) => path.basename(f)).sort()
    expect(files).toEqual([
      "adapter_config.json",
      "adapters.safetensors",
      "meta.json",
      "model.json",
      "model.onnx",
      "policy.onnx",
      "weights.safetensors"
    ])
    const policy = await readExport(out, 2)
    const count = 10 * perPrompt
    const r = await rollout({
      policy,
      sampler: ode,
      noise: 0,
      grid: uniformGrid(steps),
      chains: count,
      condition: new Int32Array(count).fill(10),
      initStream: (j) => openStream(["eval", "init", j]),
      stepStream: (j) => openStream(["eval", "step", j])
    })
    await policy.release()
    const stored = path.join(run, "eval-samples/iter-000001.parquet")
    const theirs = EvalSampleTable.read(fromParquet(new Uint8Array(fs.readFileSync(stored)), stored), stored).columns
    expect(Buffer.from(r.final.buffer).equals(Buffer.from((theirs.x_ode as Float32Array).buffer))).toBe(true)
    // The adapters moved the network: the base's samples differ.
    expect(Buffer.from(r.final.buffer).equals(Buffer.from((theirs.x_base_ode as Float32Array).buffer))).toBe(false)
  })

  it("writes the user's own graph with the merged weights, which onnxruntime-node and -web run alike", async () => {
    const out = path.join(tempDir("byom-model"), "policy")
    await exportRun(run, { iteration: "last", ema: false, out })
    const bytes = new Uint8Array(fs.readFileSync(path.join(out, "model.onnx")))
    const rng = openStream(["byom-web"])
    const x = Float32Array.from({ length: 3 * 784 }, () => rng.normal())
    const feeds = {
      x: [x, [3, 1, 28, 28]],
      t: [Float32Array.of(0.2, 0.5, 0.9), [3]],
      c: [BigInt64Array.of(7n, 10n, 3n), [3]]
    }
    const node = await EngineSession.fromBytes("model", bytes, { threads: 1 })
    const native = (await node.run(Object.fromEntries(
      Object.entries(feeds).map(([k, [data, dims]]) => [k, { data: data as Float32Array, dims: dims as Array<number> }])
    ))).v.data as Float32Array
    // The merged file is the etaflow export's network: policy.onnx on flat latents gives the same outputs.
    const exported = await readExport(out, 1)
    const viaPolicy = await exported.predict(x, 3, 0.5, Int32Array.of(7, 10, 3))
    await exported.release()
    const row = (a: Float32Array, i: number) => a.subarray(i * 784, (i + 1) * 784)
    expect(Array.from(row(viaPolicy, 1))).toEqual(Array.from(row(native, 1)))
    ortWeb.env.wasm.numThreads = 1
    const session = await ortWeb.InferenceSession.create(bytes)
    const web = (await session.run(Object.fromEntries(
      Object.entries(feeds).map(([k, [data, dims]]) => [
        k,
        new ortWeb.Tensor(k === "c" ? "int64" : "float32", data as Float32Array, dims as Array<number>)
      ])
    ))).v.data as Float32Array
    const scale = Math.max(...Array.from(native, Math.abs))
    // Two float32 kernel libraries (MLAS, wasm SIMD) sum convolutions and products in different orders.
    expect(native.reduce((m, v, i) => Math.max(m, Math.abs(v - web[i])), 0)).toBeLessThan(1e-5 * scale)
  })
})

describe("LoRA in the other pipeline families", () => {
  it.each([["diffusion-nft"], ["adjoint-matching"]])(
    "%s trains adapters only on the toy base, and they move the policy",
    async (name) => {
      const { pipelines } = await import("../../pipelines/registry.ts")
      const pipeline = pipelines.find((p) => p.name === name)!
      const out = tempRun(`byom-${name}`)
      const set = { ...toyRl, lora: "2", iterations: "3", evalEvery: "1" }
      await Effect.runPromise(runPipeline(pipeline, { out, progress: "none", seed: 2, set }) as Effect.Effect<unknown>)
      const file = path.join(out, "checkpoints/iter-000002/weights.safetensors")
      const names = Object.keys(readSafetensors(new Uint8Array(fs.readFileSync(file)), file).tensors)
      expect(names.length).toBeGreaterThan(0)
      expect(names.every((n) => /\.w\.lora_[AB]$/.test(n))).toBe(true)
      const improvement = lastMetrics(out)["eval.improvement.s6"]
      expect(Number.isFinite(improvement) && improvement !== 0).toBe(true)
    },
    300_000
  )
})

const etaflow = (...args: Array<string>) => {
  const r = spawnSync(process.execPath, [path.resolve("bin/etaflow.js"), ...args], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" }
  })
  return { code: r.status, stderr: r.stderr }
}

/** A copy of the U-Net fixture in a folder of its own, its contract and graph changed as asked. */
const brokenCopy = (
  label: string,
  change: { contract?: object | null; graph?: (m: onnxProto.onnx.ModelProto) => void }
) => {
  const dir = tempDir(`byom-${label}`)
  const model = onnxProto.onnx.ModelProto.decode(fs.readFileSync(path.join(FIXTURES, "tiny-unet.onnx")))
  change.graph?.(model)
  fs.writeFileSync(path.join(dir, "net.onnx"), onnxProto.onnx.ModelProto.encode(model).finish())
  const contract = JSON.parse(fs.readFileSync(path.join(FIXTURES, "tiny-unet.json"), "utf8"))
  if (change.contract !== null) {
    fs.writeFileSync(path.join(dir, "net.json"), JSON.stringify({ ...contract, ...change.contract }))
  }
  return path.join(dir, "net.onnx")
}

describe("an imported policy that cannot run", () => {
  it.each([
    ["a file that is not ONNX", () => {
      const file = path.join(tempDir("byom-text"), "net.onnx")
      fs.writeFileSync(file, "this is not a model\n".repeat(20))
      return file
    }, /net\.onnx: is not an ONNX model/],
    ["a missing contract", () => brokenCopy("nocontract", { contract: null }), /its contract .*model\.json is missing/],
    [
      "a contract field out of its values",
      () => brokenCopy("field", { contract: { time: "seconds" } }),
      /net\.json: field "time" is "seconds"; must be "unit" \(t ∈ \[0, 1\]\) or "thousand"/
    ],
    [
      "a latent shape the graph does not have",
      () => brokenCopy("shape", { contract: { latentShape: [1, 14, 14] } }),
      /latent "x" has shape \[B, 1, 28, 28\], the contract gives \[B, 1, 14, 14\]/
    ],
    [
      "an input the graph does not have",
      () => brokenCopy("input", { contract: { inputs: { latent: "x", time: "sigma" } } }),
      /time "sigma" is not a graph input \(it has: x, t\)/
    ],
    [
      "a process the pipeline does not train",
      () => brokenCopy("process", { contract: { process: "vp", parameterization: "epsilon" } }),
      /net\.onnx is a vp model; this pipeline trains rf/
    ],
    [
      "a weight whose shape breaks the graph",
      () =>
        brokenCopy("weight", {
          // conv_in's 16 × 1 × 3 × 3 values read as 8 × 2 × 3 × 3: two input channels for a one-channel latent.
          graph: (m) => {
            m.graph!.initializer!.find((t) => t.name === "conv_in.weight")!.dims = [8, 2, 3, 3]
          }
        }),
      /net\.onnx: node \/conv_in\/Conv \(Conv\): .*Conv of \[B,1,28,28\] with weight \[8,2,3,3\] in 1 groups: channels/
    ],
    [
      "an op outside the importable set",
      () =>
        brokenCopy("op", {
          graph: (m) => {
            m.graph!.node!.find((n) => n.opType === "Sigmoid")!.opType = "Hardmax"
          }
        }),
      /node \/time_mlp\/time_mlp\.1\/Sigmoid \(op Hardmax, node \d+ of \d+; its result feeds .+\) cannot be imported/
    ]
  ])("is refused with exit 2 and no run folder: %s", (_, make, message) => {
    const out = path.join(tempDir("byom-refused"), "run")
    const r = etaflow("run", "flow-grpo", "--set", "task=tilt", "--set", `base=${make()}`, "--out", out)
    expect(r.stderr).toMatch(message)
    expect(r.code).toBe(2)
    expect(fs.existsSync(out)).toBe(false)
  })

  it("refuses LoRA patterns that adapt no weight, listing the adaptable ones", () => {
    const out = path.join(tempDir("byom-lora"), "run")
    const args = ["--set", "task=tilt", "--set", `base=${DIT}`, "--set", "lora=2", "--set", "loraTargets=nothing*"]
    const r = etaflow("run", "flow-grpo", ...args, "--out", out)
    expect(r.stderr).toMatch(
      /setting "loraTargets": "nothing\*" matches none of the adaptable weights \(.*embed\.weight/
    )
    expect(r.code).toBe(2)
    expect(fs.existsSync(out)).toBe(false)
  })
})
