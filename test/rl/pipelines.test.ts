/** RL pipelines end to end on the 2-D double ring (small configs; the base model is trained once per file). */
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Graph } from "../../engine/graph.ts"
import { toOnnx } from "../../engine/onnx.ts"
import * as op from "../../engine/ops.ts"
import { readSafetensors } from "../../engine/safetensors.ts"
import type { RunnablePipeline } from "../../kernel/pipeline.ts"
import { runPipeline } from "../../kernel/run.ts"
import { flowGrpo } from "../../pipelines/flow-grpo.ts"
import { mixgrpo, mixWindow } from "../../pipelines/mixgrpo.ts"
import { TrajectoryTable } from "../../schemas/trajectory.ts"
import { fromParquet } from "../../store/parquet.ts"
import { isolateCache, metricSeries, tempDir, tempRun, toyRl } from "../support/runs.ts"

const tmp = () => tempRun("rl")
const metric = metricSeries
const toy = toyRl

beforeAll(() => {
  isolateCache("rl")
})

describe("flow-grpo on the double ring with the outer-ring reward", () => {
  let dir = ""
  beforeAll(async () => {
    dir = tmp()
    const exit = await Effect.runPromiseExit(
      runPipeline(flowGrpo, { out: dir, progress: "none", set: { ...toy, iterations: "5" } })
    )
    if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
  }, 600_000) // the first RL run pretrains the toy base model (~1 min on 2 free cores)

  // The update's old log-probs are the sampler's (float64 from the stored float32 latents); its first
  // step runs at θ_old, where the float32 loss graph must reproduce them: 1e-5 is float32 rounding
  // of |lp| ≲ 10 with room, while a wrong convention or coefficient is off by ≳ 1e-2.
  it("trains on the log-probs its sampler stored, which the loss graph reproduces at θ_old within 1e-5", () => {
    const dev = metric(dir, "logprob_deviation")
    expect(dev.length).toBe(5)
    expect(dev.every((r) => r.value < 1e-5)).toBe(true)
    expect(metric(dir, "first_step_ratio_deviation").every((r) => r.value < 1e-5)).toBe(true)
  })

  it("trains all but the last transition, as flow_grpo's timestep fraction 0.99 does", () => {
    // 64 trajectories × 5 of 6 steps, two minibatches per iteration.
    expect(metric(dir, "trained_rows").map((r) => r.value)).toEqual([320, 320, 320, 320, 320])
  })

  it("moves the ODE reward up, by more than 3 standard errors, on the same evaluation noise", () => {
    const [imp] = metric(dir, "eval.improvement.s6")
    const [se] = metric(dir, "eval.improvement.s6.se")
    expect(imp.iteration).toBe(4)
    expect(imp.value).toBeGreaterThan(3 * se.value)
  })

  it(
    "stores each iteration's trajectories with group ids, the terminal reward on the last step and advantages",
    () => {
      const file = path.join(dir, "trajectories/iter-000004.parquet")
      const { rows: n, columns: c } = TrajectoryTable.read(
        fromParquet(new Uint8Array(fs.readFileSync(file)), file),
        "t"
      )
      expect(n).toBe(64 * 6)
      const reward = c.reward as { values: Float64Array; valid: Uint8Array }
      for (let i = 0; i < n; i++) expect(reward.valid[i]).toBe(c.step[i] === 5 ? 1 : 0)
      // Advantages of a group (16 trajectories of one prompt) sum to 0.
      const adv = c.advantage as Float64Array
      let sum = 0
      for (let i = 0; i < n; i++) if (c.group_id[i] === 0 && c.step[i] === 0) sum += adv[i]
      expect(Math.abs(sum)).toBeLessThan(1e-9)
      expect(fs.existsSync(path.join(dir, "eval/iter-000004.parquet"))).toBe(true)
    }
  )
})

describe("RL runs", () => {
  it("stop on a NaN reward, naming it, and commit nothing of the iteration", async () => {
    const g = new Graph("nan-reward")
    const x = g.input("x", "float32", ["B", 2])
    g.output("reward", op.mul(op.reduceSum(x, [1]), Number.NaN))
    const model = path.join(tempDir("nan"), "nan.onnx")
    fs.writeFileSync(model, toOnnx(g))
    const dir = tmp()
    const exit = await Effect.runPromiseExit(
      runPipeline(flowGrpo, { out: dir, progress: "none", set: { ...toy, reward: `onnx:${model}`, iterations: "2" } })
    )
    expect(Exit.isFailure(exit)).toBe(true)
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"))
    expect(manifest).toMatchObject({ status: "failed", iterations_complete: 0 })
    expect(manifest.error).toMatch(/reward onnx:.*nan\.onnx is NaN for trajectory 0 \(prompt null\)/)
    expect(fs.existsSync(path.join(dir, "trajectories"))).toBe(false)
    expect(fs.existsSync(path.join(dir, "checkpoints"))).toBe(false)
  })

  it("MixGRPO trains only inside its window, which slides up to N − 2 and never empties", async () => {
    // Reference schedule (grpo_states.py): L = N − 2 = 4, W = [l, min(l + w, L)), l += 1 every τ = 2
    // iterations; where the reference would leave W empty at l = L, the window rolls back to 0.
    const windows = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => mixWindow(6, 4, 2, i))
    expect(windows).toEqual([[0, 4], [0, 4], [1, 4], [1, 4], [2, 4], [2, 4], [3, 4], [3, 4], [0, 4], [0, 4]])
    const dir = tmp()
    await Effect.runPromise(
      runPipeline(mixgrpo, { out: dir, progress: "none", set: { ...toy, iterations: "1", windowSize: "2" } })
    )
    expect(metric(dir, "trainable_steps")[0].value).toBe(2)
    const file = path.join(dir, "trajectories/iter-000000.parquet")
    const { columns: c } = TrajectoryTable.read(fromParquet(new Uint8Array(fs.readFileSync(file)), file), "t")
    for (let i = 0; i < c.step.length; i++) expect(c.std[i] > 0).toBe(c.step[i] < 2)
  })

  it("decay the weights as AdamW does: one step at weightDecay w moves them by −lr·w·θ_base more", async () => {
    // One optimizer step (64 trajectories, batch 64): both runs take the same Adam step from θ_base,
    // and decoupled decay subtracts lr·w·θ_base before it (AdamW; the references' 1e-4 made 0.5 to
    // be seen). lr = 0 keeps θ_base. 2e-6: float32 rounding of |θ| ≲ 4 on both sides of a difference.
    const weightsOf = async (set: Record<string, string>) => {
      const dir = tmp()
      await Effect.runPromise(
        runPipeline(flowGrpo, { out: dir, progress: "none", set: { ...toy, batchSize: "64", iterations: "1", ...set } })
      )
      const file = path.join(dir, "checkpoints/iter-000000/weights.safetensors")
      return readSafetensors(new Uint8Array(fs.readFileSync(file)), file).tensors
    }
    const base = await weightsOf({ lr: "0" })
    const plain = await weightsOf({ weightDecay: "0" })
    const decayed = await weightsOf({ weightDecay: "0.5" })
    let moved = 0
    for (const [name, t] of Object.entries(base)) {
      for (let i = 0; i < t.data.length; i++) {
        const expected = plain[name].data[i] - 1e-3 * 0.5 * t.data[i]
        expect(Math.abs(decayed[name].data[i] - expected)).toBeLessThan(2e-6)
        if (Math.abs(decayed[name].data[i] - plain[name].data[i]) > 1e-5) moved++
      }
    }
    expect(moved).toBeGreaterThan(100)
  })
})

describe("sdpo on the double ring", () => {
  it(
    "queries 3 rewards per trajectory, trains on the stored log-probs (within 1e-5 at θ_old) on the trailing grid",
    async () => {
      const { sdpo } = await import("../../pipelines/sdpo.ts")
      const dir = tmp()
      await Effect.runPromise(
        runPipeline(sdpo, {
          out: dir,
          progress: "none",
          set: { ...toy, groupSize: "2", promptsPerIteration: "8", batchSize: "4", iterations: "2" }
        })
      )
      expect(metric(dir, "reward_calls_per_trajectory").map((r) => r.value)).toEqual([3, 3])
      expect(metric(dir, "logprob_deviation").every((r) => r.value < 1e-5)).toBe(true)
      // One optimizer step per (permuted step position, minibatch of 4 pairs): 6 steps × 2 minibatches.
      expect(metric(dir, "optimizer_steps")[0].value).toBe(12)
      // SD-Turbo's trailing grid (sdpo's reference), typed out for 6 steps: round(arange(1000, 0, −1000/6)) − 1.
      const file = path.join(dir, "trajectories/iter-000001.parquet")
      const { columns: c } = TrajectoryTable.read(fromParquet(new Uint8Array(fs.readFileSync(file)), file), "t")
      const times = [...new Set(Array.from(c.t as Float64Array))].sort((a, b) => b - a)
      expect(times).toEqual([999, 832, 666, 499, 332, 166])
    },
    600_000
  )
})

describe("precise on the double ring", () => {
  it(
    "trains with ratio normalisation, its old means and log-probs from the rollout (within 1e-5 at θ_old)",
    async () => {
      const { precisePipeline } = await import("../../pipelines/precise.ts")
      const dir = tmp()
      await Effect.runPromise(
        runPipeline(precisePipeline, { out: dir, progress: "none", set: { ...toy, iterations: "1" } })
      )
      expect(metric(dir, "logprob_deviation")[0].value).toBeLessThan(1e-5)
      expect(metric(dir, "first_step_ratio_deviation")[0].value).toBeLessThan(1e-5)
      expect(metric(dir, "grad_norm")[0].value).toBeGreaterThan(0)
    },
    600_000
  )

  // A Gaussian log-prob (mean over elements) is −½ mean z² − log s − ½ log 2π with z ~ N(0, 1): adding
  // back log s + ½ log 2π leaves −½ on average (320 rows of 2 elements: s.e. ≈ 0.03). FlowCPS's
  // −mean (x' − μ)² = −s² mean z² would leave log s + ½ log 2π − s², far from −½ at these s.
  const gaussianLevel = (dir: string) => {
    const file = path.join(dir, "trajectories/iter-000000.parquet")
    const { columns: c } = TrajectoryTable.read(fromParquet(new Uint8Array(fs.readFileSync(file)), file), "t")
    const stored = c.log_prob as { values: Float64Array; valid: Uint8Array }
    const std = c.std as Float64Array
    const rows = Array.from(stored.values.keys()).filter((i) => stored.valid[i] === 1)
    return rows.reduce((a, i) => a + stored.values[i] + Math.log(std[i]) + 0.5 * Math.log(2 * Math.PI), 0) / rows.length
  }

  /** One iteration of a pipeline with CPS on the toy: its log-probs must be Gaussian, stored and reproduced. */
  const cpsRun = async (pipeline: RunnablePipeline, set: Record<string, string>) => {
    const dir = tmp()
    await Effect.runPromise(
      runPipeline(pipeline, { out: dir, progress: "none", set: { ...toy, iterations: "1", ...set } })
    )
    expect(metric(dir, "logprob_deviation")[0].value).toBeLessThan(1e-5)
    expect(Math.abs(gaussianLevel(dir) + 0.5)).toBeLessThan(0.1)
    return dir
  }

  it("trains CPS as the Precise repository's cps mode does: the Gaussian log-prob, stored and reproduced", async () => {
    const { precisePipeline } = await import("../../pipelines/precise.ts")
    await cpsRun(precisePipeline, { sampler: "cps", noiseLevel: "0.7" })
  })

  it(
    "runs GRPO-Guard as a flow-grpo setting: the normalised loss on Gaussian CPS log-probs, the ratio per step logged",
    async () => {
      // Without the guard, flow-grpo's CPS stores FlowCPS's unnormalised log-prob: the level check would fail.
      const dir = await cpsRun(flowGrpo, { sampler: "cps", guard: "true" })
      // The diagnostic: one mean ratio per trained step (5 of 6), whose row-weighted mean is the update's.
      const perStep = [0, 1, 2, 3, 4].map((k) => metric(dir, `ratio_mean.step${k}`)[0].value)
      expect(metric(dir, "ratio_mean.step5")).toEqual([])
      const overall = perStep.reduce((a, v) => a + v, 0) / perStep.length
      expect(Math.abs(overall - metric(dir, "ratio_mean")[0].value)).toBeLessThan(1e-6)
    },
    600_000
  )
})

describe("the EMA of the policy weights", () => {
  it(
    "follows flow_grpo's recursion: updates every `interval` steps with the warm-up decay min((1+n)/(10+n), decay)",
    async () => {
      const { emaStep } = await import("../../training/policy-update.ts")
      const ema = { w: Float32Array.of(0, 1) }
      let expected = [0, 1]
      for (let n = 1; n <= 24; n++) {
        const theta = { w: Float32Array.of(n, -n) }
        const changed = emaStep(ema, theta, n, 0.9, 8)
        expect(changed).toBe((n + 1) % 8 === 0)
        if (changed) {
          const d = Math.min((1 + n) / (10 + n), 0.9)
          expected = expected.map((e, i) => Math.fround(e + (1 - d) * (theta.w[i] - e)))
        }
        expect(Array.from(ema.w)).toEqual(expected)
      }
    }
  )

  it(
    "is the policy evaluated, and is checkpointed: an EMA never updated evaluates exactly as the base model",
    async () => {
      const dir = tmp()
      await Effect.runPromise(
        runPipeline(flowGrpo, {
          out: dir,
          progress: "none",
          set: { ...toy, iterations: "1", evalEvery: "1", ema: "0.9", emaInterval: "1000" }
        })
      )
      expect(metric(dir, "eval.improvement.s6")[0].value).toBe(0)
      const ckpt = path.join(dir, "checkpoints/iter-000000")
      expect(fs.readFileSync(path.join(ckpt, "ema.safetensors")).length).toBeGreaterThan(0)
      const updated = tmp()
      await Effect.runPromise(
        runPipeline(flowGrpo, {
          out: updated,
          progress: "none",
          set: { ...toy, iterations: "1", evalEvery: "1", ema: "0.9", emaInterval: "1" }
        })
      )
      expect(metric(updated, "eval.improvement.s6")[0].value).not.toBe(0)
    },
    600_000
  )
})
