import { afterEach, describe, expect, it } from "@effect/vitest"
import { Console, Effect, Exit, Fiber } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { runPipeline } from "../../kernel/run.ts"
import { fromParquet } from "../../store/parquet.ts"
import { faults, randomWalk } from "../fixtures/random-walk.ts"
import { capturing, metricLines, metricsText, tempDir } from "../support/runs.ts"

const tmp = () => tempDir("iter")
const run = (opts: Parameters<typeof runPipeline>[1]) =>
  Effect.exit(runPipeline(randomWalk, { progress: "none", ...opts }))
const checkpoint = (dir: string, i: number) =>
  fs.readFileSync(path.join(dir, "checkpoints", `iter-${String(i).padStart(6, "0")}`, "position.bin"))
const manifest = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"))

afterEach(() => {
  faults.failAt = -1
  faults.nanAt = -1
})

describe("iterated pipelines", () => {
  it.effect("thread the state through every iteration and commit one checkpoint and one table per iteration", () =>
    Effect.gen(function*() {
      const dir = path.join(tmp(), "run")
      const exit = yield* run({ out: dir, seed: 7 })
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(manifest(dir)).toMatchObject({ status: "complete", iterations: 5, iterations_complete: 5, seed: 7 })
      expect(fs.readdirSync(path.join(dir, "steps")).sort()).toEqual(
        [0, 1, 2, 3, 4].map((i) => `iter-00000${i}.parquet`)
      )
      // The final state equals the initial state plus every persisted step: the state really is threaded.
      const total = new Float64Array(8)
      for (let i = 0; i < 5; i++) {
        const file = path.join(dir, "steps", `iter-00000${i}.parquet`)
        const step = fromParquet(new Uint8Array(fs.readFileSync(file)), file).getChild("step")!.data[0].children[0]
          .values as Float32Array
        step.forEach((v, w) => (total[w] += v))
      }
      expect(Array.from(new Float64Array(Uint8Array.from(checkpoint(dir, 4)).buffer))).toEqual(Array.from(total))
      const lines = metricLines(dir)
      expect(lines.map((l) => l.iteration)).toEqual([0, 1, 2, 3, 4])
      expect(lines.every((l) => l.name === "mean_position")).toBe(true)
    }))

  it.effect("give the same bits for the same seed, and other bits for another seed", () =>
    Effect.gen(function*() {
      const [a, b, c] = [path.join(tmp(), "a"), path.join(tmp(), "b"), path.join(tmp(), "c")]
      yield* run({ out: a, seed: 1 })
      yield* run({ out: b, seed: 1 })
      yield* run({ out: c, seed: 2 })
      expect(checkpoint(a, 4).equals(checkpoint(b, 4))).toBe(true)
      expect(checkpoint(a, 4).equals(checkpoint(c, 4))).toBe(false)
      expect(metricsText(a)).toBe(metricsText(b))
    }))

  it.effect("resume after a failure from the last complete iteration and end with the uninterrupted result", () =>
    Effect.gen(function*() {
      const full = path.join(tmp(), "full")
      yield* run({ out: full, seed: 3 })
      const broken = path.join(tmp(), "broken")
      faults.failAt = 2
      const failed = yield* run({ out: broken, seed: 3 })
      expect(Exit.isFailure(failed)).toBe(true)
      expect(manifest(broken)).toMatchObject({ status: "failed", iterations_complete: 2 })
      expect(manifest(broken).error).toMatch(/injected failure at iteration 2/)
      // Nothing of iteration 2 is on disk: its steps table was written before the failure and removed.
      expect(fs.existsSync(path.join(broken, "steps", "iter-000002.parquet"))).toBe(false)
      faults.failAt = -1
      const resumed = yield* run({ resume: broken })
      expect(Exit.isSuccess(resumed)).toBe(true)
      expect(manifest(broken)).toMatchObject({ status: "complete", iterations_complete: 5 })
      expect(manifest(broken).resumed_at).toHaveLength(1)
      expect(manifest(broken).version_changes).toBeUndefined()
      expect(checkpoint(broken, 4).equals(checkpoint(full, 4))).toBe(true)
      expect(metricsText(broken)).toBe(metricsText(full))
    }))

  it.effect("warn, naming both versions, and record the change when resumed under another onnxruntime and Node", () =>
    Effect.gen(function*() {
      const dir = path.join(tmp(), "run")
      faults.failAt = 2
      yield* run({ out: dir, seed: 3 })
      faults.failAt = -1
      // As if iterations 0–1 had been computed by an older install.
      const stored = manifest(dir)
      const current = { ort: stored.versions["onnxruntime-node"], node: stored.versions.node }
      stored.versions = { ...stored.versions, "onnxruntime-node": "1.30.0", node: "20.20.2" }
      fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(stored))
      const errors: Array<string> = []
      faults.failAt = 3
      yield* run({ resume: dir }).pipe(Effect.provideService(Console.Console, capturing(errors)))
      faults.failAt = -1
      expect(errors).toEqual([expect.stringContaining(
        `resuming ${dir} under node 20.20.2 → ${current.node}, onnxruntime-node 1.30.0 → ${current.ort}`
      )])
      const changes = manifest(dir).version_changes
      expect(changes.map((c: { package: string; iteration: number; from: string; to: string }) => [
        c.package,
        c.iteration,
        c.from,
        c.to
      ])).toEqual([["node", 2, "20.20.2", current.node], ["onnxruntime-node", 2, "1.30.0", current.ort]])
      // The versions the run was created with stay; a second resume under the same versions warns no more.
      expect(manifest(dir).versions["onnxruntime-node"]).toBe("1.30.0")
      errors.length = 0
      const resumed = yield* run({ resume: dir }).pipe(Effect.provideService(Console.Console, capturing(errors)))
      expect(Exit.isSuccess(resumed)).toBe(true)
      expect(errors).toEqual([])
      expect(manifest(dir)).toMatchObject({ status: "complete", resumed_at: [expect.any(String), expect.any(String)] })
      expect(manifest(dir).version_changes).toHaveLength(2)
    }))

  it.effect("clean up what a killed iteration left behind before resuming", () =>
    Effect.gen(function*() {
      const full = path.join(tmp(), "full")
      yield* run({ out: full, seed: 4 })
      const dir = path.join(tmp(), "killed")
      faults.failAt = 3
      yield* run({ out: dir, seed: 4 })
      faults.failAt = -1
      // Simulate a SIGKILL during iteration 3: a half-written table, a stray temp file, a cut metrics line.
      fs.writeFileSync(path.join(dir, "steps", "iter-000003.parquet"), "PAR1 half")
      fs.writeFileSync(path.join(dir, "steps", "iter-000004.parquet.123.tmp"), "junk")
      fs.appendFileSync(path.join(dir, "metrics.jsonl"), "{\"iteration\":3,\"name\":\"mean_pos")
      const resumed = yield* run({ resume: dir })
      expect(Exit.isSuccess(resumed)).toBe(true)
      expect(fs.readdirSync(path.join(dir, "steps")).filter((f) => f.endsWith(".tmp"))).toEqual([])
      expect(checkpoint(dir, 4).equals(checkpoint(full, 4))).toBe(true)
      expect(metricsText(dir)).toBe(metricsText(full))
    }))

  it.effect("fail naming the file when a commit cannot be written, and keep the iterations that landed", () =>
    Effect.gen(function*() {
      const dir = path.join(tmp(), "unwritable")
      faults.failAt = 2
      yield* run({ out: dir, seed: 5 })
      faults.failAt = -1
      // The folder of the persisted tables becomes a file: iteration 2's commit (written by the commit worker) fails.
      fs.rmSync(path.join(dir, "steps"), { recursive: true })
      fs.writeFileSync(path.join(dir, "steps"), "not a folder")
      const exit = yield* run({ resume: dir })
      expect(Exit.isFailure(exit)).toBe(true)
      expect(manifest(dir)).toMatchObject({ status: "failed", iterations_complete: 2 })
      expect(manifest(dir).error).toMatch(/steps/)
      expect(fs.readdirSync(path.join(dir, "checkpoints"))).toEqual(["iter-000000", "iter-000001"])
      expect(metricLines(dir)).toHaveLength(2)
    }))

  it.effect("stop on a NaN metric, naming the node and iteration, and commit nothing of that iteration", () =>
    Effect.gen(function*() {
      const dir = path.join(tmp(), "nan")
      faults.nanAt = 1
      const exit = yield* run({ out: dir })
      expect(Exit.isFailure(exit)).toBe(true)
      const m = manifest(dir)
      expect(m).toMatchObject({ status: "failed", iterations_complete: 1 })
      expect(m.error).toMatch(/iteration 1, node walk: metric "mean_position" is NaN/)
      expect(fs.readdirSync(path.join(dir, "steps"))).toEqual(["iter-000000.parquet"])
      expect(fs.readdirSync(path.join(dir, "checkpoints"))).toEqual(["iter-000000"])
      expect(metricLines(dir)).toHaveLength(1)
    }))

  it(
    "keep the last iteration's commit when interrupted while it lands, and resume to the uninterrupted result",
    async () => {
      const [dir, reference] = [path.join(tmp(), "run"), path.join(tmp(), "reference")]
      // 600 k walkers: a 2.4 MB steps table and a 4.8 MB checkpoint keep the worker busy for tens of
      // milliseconds, long enough for the interrupt to arrive while the run waits for the last commit.
      const set = { walkers: "600000", iterations: "2" }
      const fiber = Effect.runFork(runPipeline(randomWalk, { progress: "none", out: dir, seed: 3, set }))
      const lastStarted = () =>
        fs.existsSync(path.join(dir, "steps")) &&
        fs.readdirSync(path.join(dir, "steps")).some((f) => f.includes("000001"))
      for (let i = 0; i < 30_000 && !lastStarted(); i++) await new Promise((r) => setTimeout(r, 2))
      await Effect.runPromise(Fiber.interrupt(fiber))
      expect(manifest(dir)).toMatchObject({ status: "interrupted", iterations_complete: 2 })
      expect(fs.existsSync(path.join(dir, "checkpoints", "iter-000001"))).toBe(true)
      expect(Exit.isSuccess(await Effect.runPromise(run({ resume: dir })))).toBe(true)
      await Effect.runPromise(run({ out: reference, seed: 3, set }))
      expect(checkpoint(dir, 1).equals(checkpoint(reference, 1))).toBe(true)
      expect(metricsText(dir)).toBe(metricsText(reference))
    },
    120_000
  )

  it.effect("refuse to resume a run folder another live process holds, and take over a stale lock", () =>
    Effect.gen(function*() {
      const dir = path.join(tmp(), "locked")
      faults.failAt = 1
      yield* run({ out: dir })
      faults.failAt = -1
      fs.writeFileSync(path.join(dir, ".lock"), String(process.ppid))
      const refused = yield* run({ resume: dir })
      expect(Exit.isFailure(refused)).toBe(true)
      expect(String(Exit.isFailure(refused) && refused.cause)).toMatch(/being written by process/)
      fs.writeFileSync(path.join(dir, ".lock"), "999999999")
      expect(Exit.isSuccess(yield* run({ resume: dir }))).toBe(true)
      expect(fs.existsSync(path.join(dir, ".lock"))).toBe(false)
    }))

  it.effect("refuse a lock from another host unless the run's cluster lease is held, then take it over", () =>
    Effect.gen(function*() {
      const dir = path.join(tmp(), "remote")
      faults.failAt = 1
      yield* run({ out: dir })
      faults.failAt = -1
      // A live PID here says nothing about a process on another machine (a runner that died there).
      const remote = JSON.stringify({ pid: process.ppid, host: "elsewhere.invalid", owner: "runner elsewhere:34431" })
      fs.writeFileSync(path.join(dir, ".lock"), remote)
      const refused = yield* run({ resume: dir })
      expect(String(Exit.isFailure(refused) && refused.cause)).toMatch(
        /locked by process \d+ on elsewhere\.invalid \(runner elsewhere:34431\), which cannot be checked/
      )
      const leased = yield* run({ resume: dir, lock: { leased: true, owner: "runner here:1" } })
      expect(Exit.isSuccess(leased)).toBe(true)
      expect(manifest(dir)).toMatchObject({ status: "complete", iterations_complete: 5 })
    }))

  it.effect("refuse a new run into a folder that is not empty", () =>
    Effect.gen(function*() {
      const dir = tmp()
      fs.writeFileSync(path.join(dir, "x"), "")
      const exit = yield* run({ out: dir })
      expect(String(Exit.isFailure(exit) && exit.cause)).toMatch(/already exists and is not empty/)
    }))
})
