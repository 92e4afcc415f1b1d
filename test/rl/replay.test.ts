/** Replay: a stored run re-run from a node onward, reading that node's inputs from its Parquet files. */
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it, vi } from "vitest"
import { runPipeline } from "../../kernel/run.ts"
import { flowGrpo } from "../../pipelines/flow-grpo.ts"
import { Replay } from "../../pipelines/replay.ts"
import { bestIteration, pruneRun } from "../../pipelines/rl-retention.ts"
import { TrajectoryTable } from "../../schemas/trajectory.ts"
import { fromParquet } from "../../store/parquet.ts"
import { isolateCache, metricsText, tempRun, toyRl } from "../support/runs.ts"

const tmp = () => tempRun("replay")
const set = {
  ...toyRl,
  steps: "5",
  groupSize: "8",
  evalSteps: "5",
  evalSamplesPerPrompt: "32",
  evalEvery: "2",
  iterations: "3"
}
const weights = (dir: string) => fs.readFileSync(path.join(dir, "checkpoints/iter-000002/weights.safetensors"))
const metrics = metricsText
let source = ""

beforeAll(async () => {
  isolateCache("replay")
  source = tmp()
  await Effect.runPromise(runPipeline(flowGrpo, { out: source, progress: "none", seed: 2, set }))
}, 600_000)

describe("replay", () => {
  it.each(["update", "advantages", "rewards", "evaluation"])(
    "of an unchanged run from %s reproduces its weights and metrics bit for bit",
    async (from) => {
      const out = tmp()
      const r = await Effect.runPromise(Replay.fromRun(source).from(from).with({}, { out, progress: "none" }))
      expect(r.dir).toBe(out)
      expect(weights(out).equals(weights(source))).toBe(true)
      expect(metrics(out)).toBe(metrics(source))
      const manifest = JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8"))
      expect(manifest.replay_of).toEqual({ source, from, overrides: {} })
    }
  )

  it.each([["score", "rewards"], ["normalize", "advantages"], ["evaluate", "evaluation"]])(
    "still accepts the old stage name %s, for %s, with a deprecation line",
    async (old, entry) => {
      const lines: Array<string> = []
      const spy = vi.spyOn(console, "error").mockImplementation((...args: Array<unknown>) =>
        void lines.push(args.join(" "))
      )
      const out = tmp()
      try {
        await Effect.runPromise(Replay.fromRun(source).from(old).with({}, { out, progress: "none" }))
      } finally {
        spy.mockRestore()
      }
      expect(lines.join("\n")).toMatch(new RegExp(`--from ${old} is deprecated; the stage is now called "${entry}"`))
      expect(JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")).replay_of.from).toBe(entry)
      expect(weights(out).equals(weights(source))).toBe(true)
    }
  )

  it("warns, naming both versions, when the stored run was computed with another onnxruntime", async () => {
    const stored = tmp()
    fs.cpSync(source, stored, { recursive: true })
    const manifest = JSON.parse(fs.readFileSync(path.join(stored, "manifest.json"), "utf8"))
    const current = manifest.versions["onnxruntime-node"]
    manifest.versions["onnxruntime-node"] = "1.30.0"
    fs.writeFileSync(path.join(stored, "manifest.json"), JSON.stringify(manifest))
    const lines: Array<string> = []
    const spy = vi.spyOn(console, "error").mockImplementation((...args: Array<unknown>) =>
      void lines.push(args.join(" "))
    )
    try {
      await Effect.runPromise(Replay.fromRun(stored).from("update").with({}, { out: tmp(), progress: "none" }))
    } finally {
      spy.mockRestore()
    }
    expect(lines).toEqual([expect.stringContaining(`replaying ${stored} under onnxruntime-node 1.30.0 → ${current};`)])
  })

  it("re-scores stored samples with another reward model", async () => {
    const out = tmp()
    await Effect.runPromise(
      Replay.fromRun(source).from("rewards").with({ reward: "quadratic" }, { out, progress: "none" })
    )
    const reward = (dir: string) =>
      metrics(dir).trim().split("\n").map((l) => JSON.parse(l)).filter((m) =>
        m.name === "reward_mean" && m.iteration === 0
      )[0].value
    expect(reward(out)).not.toBe(reward(source))
    // The stored samples are the same: the replay's trajectory table holds the source's latents,
    // coefficients and log-probs value for value; only the rewards (and advantages) differ.
    const table = (dir: string) => {
      const file = path.join(dir, "trajectories/iter-000002.parquet")
      return TrajectoryTable.read(fromParquet(new Uint8Array(fs.readFileSync(file)), file), file).columns
    }
    const [mine, theirs] = [table(out), table(source)]
    for (const column of ["latent", "next_latent", "x0_pred", "t", "a", "b", "std"] as const) {
      expect(Array.from(mine[column] as ArrayLike<number>)).toEqual(Array.from(theirs[column] as ArrayLike<number>))
    }
    const values = (
      c: typeof mine.log_prob
    ) => (c instanceof Float64Array ? Array.from(c) : Array.from((c as { values: Float64Array }).values))
    expect(values(mine.log_prob)).toEqual(values(theirs.log_prob))
    expect(values(mine.reward)).not.toEqual(values(theirs.reward))
  })

  it("re-runs the updates from stored rollouts with another learning rate", async () => {
    const out = tmp()
    await Effect.runPromise(Replay.fromRun(source).from("update").with({ lr: "1e-4" }, { out, progress: "none" }))
    expect(weights(out).equals(weights(source))).toBe(false)
  })

  it("names an entry that does not exist", async () => {
    const exit = await Effect.runPromiseExit(
      Replay.fromRun(source).from("nonsense").with({}, { out: tmp(), progress: "none" })
    )
    expect(String(Exit.isFailure(exit) && exit.cause)).toMatch(/has no entry "nonsense"/)
  })
})

describe("retention", () => {
  const files = (
    dir: string,
    sub: string
  ) => (fs.existsSync(path.join(dir, sub)) ? fs.readdirSync(path.join(dir, sub)).sort() : [])
  const columns = (file: string) =>
    TrajectoryTable.read(fromParquet(new Uint8Array(fs.readFileSync(file)), file), file).columns

  it("keeps by default every iteration's weights, the last trajectories, moments in the newest checkpoint", () => {
    expect(files(source, "trajectories")).toEqual(["iter-000002.parquet"])
    expect(files(source, "checkpoints")).toEqual(["iter-000000", "iter-000001", "iter-000002"])
    expect(files(source, "checkpoints/iter-000001")).not.toContain("adam_m.safetensors")
    expect(files(source, "checkpoints/iter-000001")).toContain("weights.safetensors")
    expect(files(source, "checkpoints/iter-000002")).toContain("adam_m.safetensors")
  })

  it("lets replay regenerate the trajectories a run did not keep, bit for bit", async () => {
    const full = tmp()
    await Effect.runPromise(
      runPipeline(flowGrpo, { out: full, progress: "none", seed: 2, set: { ...set, keep: "all" } })
    )
    expect(weights(full).equals(weights(source))).toBe(true)
    // Replaying the default-retention run from update (keeping everything) regenerates iterations 0 and 1.
    const out = tmp()
    await Effect.runPromise(Replay.fromRun(source).from("update").with({ keep: "all" }, { out, progress: "none" }))
    for (const i of ["000000", "000001", "000002"]) {
      const [mine, theirs] = [
        columns(path.join(out, `trajectories/iter-${i}.parquet`)),
        columns(path.join(full, `trajectories/iter-${i}.parquet`))
      ]
      for (const c of ["latent", "next_latent", "x0_pred", "reward", "advantage", "log_prob"] as const) {
        expect(mine[c]).toEqual(theirs[c])
      }
    }
    expect(weights(out).equals(weights(source))).toBe(true)
  })

  it("thins a run folder with prune: minimal keeps the best and last checkpoints, no trajectories", async () => {
    const dir = tmp()
    await Effect.runPromise(
      runPipeline(flowGrpo, { out: dir, progress: "none", seed: 2, set: { ...set, keep: "all" } })
    )
    const removed = pruneRun(dir, "minimal")
    expect(removed.length).toBeGreaterThan(0)
    expect(files(dir, "trajectories")).toEqual([])
    const best = bestIteration(dir, { best: "default", reward: "default", steps: 5, task: "prompted" })
    const kept = [...new Set([best, 2])].map((i) => `iter-00000${i}`).sort()
    expect(files(dir, "checkpoints")).toEqual(kept)
    expect(JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")).config.keep).toBe("minimal")
    // A replay that needs a state the run did not keep says which one.
    const exit = await Effect.runPromiseExit(
      Replay.fromRun(dir).from("update").with({}, { out: tmp(), progress: "none" })
    )
    expect(String(Exit.isFailure(exit) && exit.cause)).toMatch(
      /checkpoints\/iter-00000\d is missing: the run did not keep the state/
    )
  })
})
