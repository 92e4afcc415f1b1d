/**
 * Integrity: every committed file's SHA-256 is recorded by its commit and checked before a resume, a
 * replay, an export or a report uses it; faults are injected into copies of one reference run.
 */
import { Cause, Console, Effect, Exit } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runPipeline } from "../../kernel/run.ts"
import { flowGrpo } from "../../pipelines/flow-grpo.ts"
import { Replay } from "../../pipelines/replay.ts"
import {
  canMount,
  filesFrom,
  flipByte,
  growDisk,
  sha256sum,
  smallDisk,
  stoppedCopy,
  unmount
} from "../support/faults.ts"
import { capturing, isolateCache, metricsText, tempDir, tempRun, toyRl } from "../support/runs.ts"

const set = { ...toyRl, evalSamplesPerPrompt: "64", evalEvery: "1", iterations: "4", keep: "all" }
const ITERATIONS = 4
let reference = ""
let cache = ""

const cli = (...args: Array<string>) =>
  spawnSync(process.execPath, [path.resolve("bin/etaflow.js"), ...args], {
    env: { ...process.env, ETAFLOW_CACHE: cache },
    encoding: "utf8"
  })
const ckptFile = (dir: string, i: number, f: string) => path.join(dir, "checkpoints", `iter-00000${i}`, f)
const lastWeights = (dir: string) => fs.readFileSync(ckptFile(dir, ITERATIONS - 1, "weights.safetensors"))
const index = (dir: string, i: number) =>
  JSON.parse(fs.readFileSync(path.join(dir, "index", `iter-00000${i}.json`), "utf8")) as {
    files: Record<string, { sha256: string; bytes: number }>
  }
const manifest = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"))
const resume = (dir: string, console?: Console.Console) =>
  Effect.runPromiseExit(
    runPipeline(flowGrpo, { resume: dir, progress: "none" }).pipe(
      console === undefined ? (e) => e : Effect.provideService(Console.Console, console)
    )
  )
const failure = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "succeeded")

beforeAll(async () => {
  cache = isolateCache("integrity")
  reference = tempRun("integrity-ref")
  await Effect.runPromise(runPipeline(flowGrpo, { out: reference, progress: "none", seed: 5, set }))
}, 600_000)

describe("a run folder's records", () => {
  it("hold the SHA-256 of every file each commit wrote, as coreutils' sha256sum computes it", () => {
    for (let i = 0; i < ITERATIONS; i++) {
      const files = index(reference, i).files
      const own = Object.keys(files).filter((f) => f.includes(`iter-00000${i}`)).sort()
      expect(own).toEqual([
        `checkpoints/iter-00000${i}/adam_m.safetensors`,
        `checkpoints/iter-00000${i}/adam_v.safetensors`,
        `checkpoints/iter-00000${i}/rng.json`,
        `checkpoints/iter-00000${i}/state.json`,
        `checkpoints/iter-00000${i}/weights.safetensors`,
        `eval-samples/iter-00000${i}.parquet`,
        `eval/iter-00000${i}.parquet`,
        `trajectories/iter-00000${i}.parquet`
      ])
      for (const f of own) {
        expect(files[f].sha256, f).toBe(sha256sum(path.join(reference, f)))
        expect(files[f].bytes, f).toBe(fs.statSync(path.join(reference, f)).size)
      }
    }
    // Summaries every commit rewrites are bookkeeping, not records: an interrupted commit may leave them ahead.
    const all = Object.keys(index(reference, ITERATIONS - 1).files)
    expect(all.filter((f) => f.startsWith("meta/") || f.startsWith("metrics"))).toEqual([])
  })

  it("are checked by `etaflow verify`: clean exits 0; damaged, missing and unrecorded files are each listed", () => {
    const clean = cli("verify", reference)
    expect(clean.status, clean.stderr).toBe(0)
    expect(clean.stdout).toContain(`${reference}: 4 iterations committed`)
    expect(clean.stdout).toMatch(/clean$/m)
    const dir = tempRun("verify")
    fs.cpSync(reference, dir, { recursive: true })
    const evalFile = path.join(dir, "eval/iter-000001.parquet")
    flipByte(evalFile)
    fs.rmSync(path.join(dir, "trajectories/iter-000002.parquet"))
    fs.writeFileSync(path.join(dir, "notes.txt"), "mine")
    const found = cli("verify", dir)
    expect(found.status).toBe(1)
    expect(found.stdout).toContain(
      `${evalFile} is damaged: iteration 1 recorded sha256 ${
        index(reference, 1).files["eval/iter-000001.parquet"].sha256
      }`
    )
    expect(found.stdout).toContain(`found sha256 ${sha256sum(evalFile)}`)
    expect(found.stdout).toContain(`${path.join(dir, "trajectories/iter-000002.parquet")} is missing`)
    expect(found.stdout).toMatch(/unrecorded +notes\.txt/)
    expect(found.stderr).toContain(`verify: 2 damaged files in ${dir}`)
    const json = JSON.parse(cli("verify", dir, "--json").stdout) as Array<{ damaged: Array<unknown> }>
    expect(json[0].damaged).toHaveLength(2)
  })

  it("are checked for every run of an experiment folder", () => {
    const experiment = tempDir("verify-experiment")
    fs.cpSync(reference, path.join(experiment, "runs", "a-seed0"), { recursive: true })
    fs.cpSync(reference, path.join(experiment, "runs", "a-seed1"), { recursive: true })
    flipByte(ckptFile(path.join(experiment, "runs", "a-seed1"), 0, "weights.safetensors"))
    const found = cli("verify", experiment)
    expect(found.status).toBe(1)
    expect(found.stdout).toMatch(/a-seed0: 4 iterations committed, \d+ recorded files checked — clean/)
    expect(found.stdout).toMatch(/a-seed1: .* — 1 damaged/)
    expect(cli("verify", tempDir("empty")).status).toBe(2)
  })
})

describe("a resume", () => {
  it.each(["weights.safetensors", "adam_m.safetensors"])(
    "refuses a checkpoint whose %s has a byte flipped (exit 1, the file and both hashes named), commits nothing",
    (name) => {
      const dir = stoppedCopy(reference, tempRun("flip"), 3)
      const file = ckptFile(dir, 2, name)
      flipByte(file)
      const refused = cli("run", "flow-grpo", "--resume", dir, "--progress", "none")
      expect(refused.status).toBe(1)
      expect(refused.stderr).toContain(
        `${file} is damaged: iteration 2 recorded sha256 ${
          index(reference, 2).files[`checkpoints/iter-000002/${name}`].sha256
        }`
      )
      expect(refused.stderr).toContain(`found sha256 ${sha256sum(file)}`)
      expect(refused.stderr).toContain("the newest intact checkpoint is iteration 1")
      expect(manifest(dir)).toMatchObject({ iterations_complete: 3, status: "failed" })
      expect(manifest(dir).error).toContain(`${file} is damaged`)
      expect(filesFrom(dir, 3)).toEqual([])
      expect(metricsText(dir)).not.toContain("\"iteration\":3")
    },
    120_000
  )

  it("continues bit for bit once the damaged file is restored", async () => {
    const dir = stoppedCopy(reference, tempRun("restored"), 3)
    const file = ckptFile(dir, 2, "weights.safetensors")
    flipByte(file)
    expect(Exit.isFailure(await resume(dir))).toBe(true)
    flipByte(file)
    const exit = await resume(dir)
    expect(Exit.isSuccess(exit), failure(exit)).toBe(true)
    expect(lastWeights(dir).equals(lastWeights(reference))).toBe(true)
    expect(metricsText(dir)).toBe(metricsText(reference))
  })

  it("removes a checkpoint folder a killed commit left as .tmp (verify lists it) and ends bit for bit", async () => {
    const dir = stoppedCopy(reference, tempRun("tmp"), 3)
    fs.renameSync(path.join(dir, "checkpoints/iter-000003"), path.join(dir, "checkpoints/iter-000003.4242.tmp"))
    const listed = cli("verify", dir)
    expect(listed.status).toBe(0)
    expect(listed.stdout).toMatch(/uncommitted +checkpoints\/iter-000003\.4242\.tmp/)
    const exit = await resume(dir)
    expect(Exit.isSuccess(exit), failure(exit)).toBe(true)
    expect(fs.existsSync(path.join(dir, "checkpoints/iter-000003.4242.tmp"))).toBe(false)
    expect(lastWeights(dir).equals(lastWeights(reference))).toBe(true)
  })

  it("names the manifest when it is truncated; verify calls it damage", () => {
    const dir = stoppedCopy(reference, tempRun("manifest"), 3)
    const file = path.join(dir, "manifest.json")
    fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2))
    const refused = cli("run", "flow-grpo", "--resume", dir)
    expect(refused.status).toBe(2)
    expect(refused.stderr).toContain(`${file}: not a valid etaflow manifest`)
    const found = cli("verify", dir)
    expect(found.status).toBe(1)
    expect(found.stdout).toContain(`${file}: not a valid etaflow manifest`)
  })

  it("continues an older folder without recorded hashes, with a one-line notice", async () => {
    const dir = stoppedCopy(reference, tempRun("legacy"), 3)
    fs.rmSync(path.join(dir, "index"), { recursive: true })
    const lines: Array<string> = []
    const exit = await resume(dir, capturing(lines))
    expect(Exit.isSuccess(exit), failure(exit)).toBe(true)
    expect(lines).toEqual([
      `etaflow: notice: ${dir} records no file hashes (written before etaflow recorded them); ` +
      "its checkpoint is not verified"
    ])
    expect(lastWeights(dir).equals(lastWeights(reference))).toBe(true)
  })
})

describe("a replay, an export and a report", () => {
  it("refuse stored trajectories with a byte flipped, naming the file", async () => {
    const dir = tempRun("replay-flip")
    fs.cpSync(reference, dir, { recursive: true })
    const file = path.join(dir, "trajectories/iter-000001.parquet")
    flipByte(file)
    const exit = await Effect.runPromiseExit(
      Replay.fromRun(dir).from("advantages").with({}, { out: tempRun("replayed"), progress: "none" })
    )
    expect(failure(exit)).toContain(`${file} is damaged`)
  })

  it("refuse to regenerate recorded trajectories that were deleted, instead of rolling out again", async () => {
    const dir = tempRun("replay-missing")
    fs.cpSync(reference, dir, { recursive: true })
    const file = path.join(dir, "trajectories/iter-000000.parquet")
    fs.rmSync(file)
    const exit = await Effect.runPromiseExit(
      Replay.fromRun(dir).from("advantages").with({}, { out: tempRun("replayed"), progress: "none" })
    )
    expect(failure(exit)).toContain(`${file} is missing: iteration 0 recorded sha256`)
  })

  it("refuse weights with a byte flipped (export) and evaluation samples with one (report)", () => {
    const dir = tempRun("export-flip")
    fs.cpSync(reference, dir, { recursive: true })
    const weights = ckptFile(dir, 3, "weights.safetensors")
    flipByte(weights)
    const exported = cli("export", dir, "--out", tempRun("exported"))
    expect(exported.status).toBe(1)
    expect(exported.stderr).toContain(`${weights} is damaged`)
    const samples = path.join(dir, "eval-samples/iter-000003.parquet")
    flipByte(samples)
    const report = cli("report", dir)
    expect(report.status).toBe(1)
    expect(report.stderr).toContain(`${samples} is damaged`)
  })
})

describe.runIf(canMount)("a disk that fills in the middle of a commit", () => {
  const mount = tempDir("small-disk")
  afterAll(() => unmount(mount))

  /** The tmpfs bytes a folder's files take (whole pages) once iterations < k are committed. */
  const bytesThrough = (k: number) =>
    (fs.readdirSync(reference, { recursive: true }) as Array<string>).reduce((sum, f) => {
      const p = path.join(reference, f)
      const it = /iter-(\d{6})/.exec(f)
      if (fs.statSync(p).isDirectory() || (it !== null && Number(it[1]) >= k)) return sum
      return sum + Math.ceil(fs.statSync(p).size / 4096) * 4096
    }, 0)

  it("stops the run naming the file and ENOSPC; once space returns, --resume ends bit for bit", async () => {
    // Room for two iterations and half of the third: the third's commit runs out of space.
    expect(smallDisk(mount, Math.round((bytesThrough(2) + bytesThrough(3)) / 2))).toBe(true)
    const dir = path.join(mount, "run")
    const stopped = await Effect.runPromiseExit(runPipeline(flowGrpo, { out: dir, progress: "none", seed: 5, set }))
    expect(failure(stopped)).toMatch(new RegExp(`${mount}/run/\\S+: ENOSPC: no space left on device`))
    const complete = manifest(dir).iterations_complete
    expect(complete).toBeGreaterThanOrEqual(1)
    expect(complete).toBeLessThan(ITERATIONS)
    growDisk(mount, 64 * 2 ** 20)
    expect(cli("verify", dir).status).toBe(0)
    const resumed = await resume(dir)
    expect(Exit.isSuccess(resumed), failure(resumed)).toBe(true)
    expect(lastWeights(dir).equals(lastWeights(reference))).toBe(true)
    expect(metricsText(dir)).toBe(metricsText(reference))
  })
})
