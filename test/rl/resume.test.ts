/**
 * Exact resume: an RL run killed with SIGKILL mid-run and resumed ends with the same weights and
 * the same metrics as an uninterrupted run with the same seed.
 */
import { Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { runPipeline } from "../../kernel/run.ts"
import { flowGrpo } from "../../pipelines/flow-grpo.ts"
import { metricsText, tempDir, tempRun, toyRl } from "../support/runs.ts"

const cache = tempDir("resume-cache")
const set = { ...toyRl, evalSamplesPerPrompt: "64", evalEvery: "3", iterations: "6" }
const args = Object.entries(set).flatMap(([k, v]) => ["--set", `${k}=${v}`])
const env = { ...process.env, ETAFLOW_CACHE: cache }
const last = (dir: string) => fs.readFileSync(path.join(dir, "checkpoints/iter-000005/weights.safetensors"))
const metrics = metricsText

let reference = ""

beforeAll(async () => {
  process.env.ETAFLOW_CACHE = cache
  reference = tempRun("ref")
  await Effect.runPromise(runPipeline(flowGrpo, { out: reference, progress: "none", seed: 5, set }))
}, 600_000)

/** Runs flow-grpo in a child process, sends `signal` `delay` ms after checkpoint `k` appears; resolves its exit. */
const killedRun = (dir: string, k: number, delay: number, signal: NodeJS.Signals = "SIGKILL") =>
  new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [
      path.resolve("bin/etaflow.js"),
      "run",
      "flow-grpo",
      ...args,
      "--seed",
      "5",
      "--out",
      dir,
      "--progress",
      "none"
    ], { env, stdio: "ignore" })
    const poll = setInterval(() => {
      if (fs.existsSync(path.join(dir, `checkpoints/iter-00000${k}`))) {
        clearInterval(poll)
        setTimeout(() => child.kill(signal), delay)
      }
    }, 5)
    child.on("exit", (code) => {
      clearInterval(poll)
      resolve(code)
    })
  })

describe("a run killed with SIGKILL and resumed", () => {
  // Kill points are timed, not aimed at a file write; the run has 6 iterations, so each lands mid-run.
  it.each([[0, 0], [2, 0], [3, 30]])(
    "ends with the uninterrupted run's weights and metrics (killed when checkpoint %i appears, + %i ms)",
    async (k, delay) => {
      const dir = tempRun("kill")
      await killedRun(dir, k, delay)
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"))
      expect(manifest.status).toBe("running") // it never got to say otherwise
      const resumed = spawnSync(process.execPath, [
        path.resolve("bin/etaflow.js"),
        "run",
        "flow-grpo",
        "--resume",
        dir,
        "--progress",
        "none"
      ], { env, encoding: "utf8" })
      expect(resumed.status, resumed.stderr).toBe(0)
      expect(last(dir).equals(last(reference))).toBe(true)
      expect(metrics(dir)).toBe(metrics(reference))
    },
    600_000
  )
})

describe("a run interrupted with SIGINT or SIGTERM", () => {
  it.each([["SIGINT", 130], ["SIGTERM", 143]] as const)(
    "on %s commits nothing partial, says interrupted, releases its lock, exits %i, and resumes to the same result",
    async (signal, code) => {
      const dir = tempRun("interrupt")
      expect(await killedRun(dir, 1, 0, signal)).toBe(code)
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"))
      expect(manifest.status).toBe("interrupted")
      expect(fs.existsSync(path.join(dir, ".lock"))).toBe(false)
      // Only committed iterations are on disk, each once in the metrics.
      const committed = manifest.iterations_complete as number
      expect(fs.readdirSync(path.join(dir, "checkpoints")).length).toBe(committed)
      expect(new Set(metricsText(dir).trim().split("\n").map((l) => JSON.parse(l).iteration))).toEqual(
        new Set(Array.from({ length: committed }, (_, i) => i))
      )
      const resumed = spawnSync(
        process.execPath,
        [path.resolve("bin/etaflow.js"), "run", "flow-grpo", "--resume", dir],
        {
          env,
          encoding: "utf8"
        }
      )
      expect(resumed.status, resumed.stderr).toBe(0)
      expect(last(dir).equals(last(reference))).toBe(true)
      expect(metricsText(dir)).toBe(metrics(reference))
    },
    600_000
  )
})

describe("a run its stopWhen rule ends", () => {
  it(
    "stops after the iteration where the rule first holds, exits 0 as complete with the reason, and resumes to nothing",
    () => {
      const dir = tempRun("stop")
      // Holds at the first evaluation whatever its value: the run must end exactly there.
      const first = JSON.parse(metrics(reference).split("\n").find((l) => l.includes("eval.improvement.s6"))!).iteration
      const run = (extra: Array<string>) =>
        spawnSync(process.execPath, [path.resolve("bin/etaflow.js"), "run", "flow-grpo", ...extra], {
          env,
          encoding: "utf8"
        })
      const stopped = run([...args, "--set", "stopWhen=eval.improvement.s6 > -1e9", "--seed", "5", "--out", dir])
      expect(stopped.status, stopped.stderr).toBe(0)
      expect(stopped.stderr).toMatch(
        new RegExp(`stopped after iteration ${first}: eval.improvement.s6 = .* above -1000000000`)
      )
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"))
      expect([manifest.status, manifest.iterations_complete, manifest.stopped.iteration]).toEqual([
        "complete",
        first + 1,
        first
      ])
      // Up to the stop it is the reference run, bit for bit.
      const upTo = (text: string) => text.split("\n").filter((l) => l !== "" && JSON.parse(l).iteration <= first)
      expect(upTo(metrics(dir))).toEqual(upTo(metrics(reference)))
      const resumed = run(["--resume", dir, "--progress", "none"])
      expect(resumed.status, resumed.stderr).toBe(0)
      expect(resumed.stderr).toMatch(/is complete: stopWhen stopped it after iteration/)
      expect(upTo(metrics(dir)).length).toBe(metrics(dir).trim().split("\n").length)
      expect(JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")).iterations_complete).toBe(first + 1)
    },
    600_000
  )
})
