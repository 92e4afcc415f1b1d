/**
 * The cluster end to end, with real processes: runners and submitters of the `etaflow` command over
 * the machine's PostgreSQL (a database per test, dropped afterwards). Every outcome is checked against
 * the local executor running the same experiment. PostgreSQL runs on every development machine and in
 * CI (127.0.0.1:5432, trust authentication); without it these tests fail rather than pass unseen. Checked against
 * the local executor running the same experiment: the comparison and each run's metrics.jsonl and
 * final weights must be the same bytes, whichever runners carried the runs and whatever died.
 */
import { DuckDBInstance } from "@duckdb/node-api"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parseClusterUrl } from "../../experiments/cluster/database.ts"
import { executeRun } from "../../experiments/cluster/runner.ts"
import { DEFAULT_TIMING } from "../../experiments/cluster/timing.ts"
import { readManifest } from "../../kernel/run-folder.ts"
import { packageVersions } from "../../kernel/versions.ts"
import {
  etaflow,
  failingExperimentScript,
  freshDatabase,
  type Proc,
  runInFlight,
  startRunner,
  stopAll,
  toyExperimentScript,
  waitFor
} from "../support/cluster.ts"
import { isolateCache, tempDir } from "../support/runs.ts"

const RUNS = ["frozen/seed-0", "frozen/seed-1", "learning/seed-0", "learning/seed-1"]
const LEASE = ["--lease", "3"]

const comparison = async (dir: string) => {
  const db = await DuckDBInstance.create(":memory:")
  const c = await db.connect()
  const rows = await c.runAndReadAll(
    `SELECT * FROM '${dir}/comparison.parquet' WHERE metric NOT IN ('iteration_seconds', 'compute_seconds')
     ORDER BY kind, arm, metric, iteration`
  )
  return JSON.stringify(rows.getRowObjectsJson())
}
const runDir = (folder: string, run: string) => path.join(folder, "runs", run)
const lastWeights = (dir: string) => {
  const ckpts = fs.readdirSync(path.join(dir, "checkpoints")).sort()
  return fs.readFileSync(path.join(dir, "checkpoints", ckpts[ckpts.length - 1], "weights.safetensors"))
}
const metricsOf = (dir: string) => fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8")
const listening = (p: Proc) => () => /Listening on/.test(p.output())
const succeeded = async (p: Proc) => {
  const code = await p.exited
  if (code !== 0) throw new Error(`exit ${code}:\n${p.output()}`)
}

/** The same experiment run by the local executor: the reference every cluster outcome must equal. */
const localReference = async (script: string, iterations: number) => {
  const out = path.join(tempDir("cluster-local"), `local-${iterations}`)
  await succeeded(etaflow(["experiment", "run", script, "--out", out, "--progress", "none"]))
  return out
}

const procs: Array<Proc> = []
const drops: Array<() => Promise<unknown>> = []
beforeAll(() => void isolateCache("cluster"))
afterAll(async () => {
  await stopAll(procs)
  for (const drop of drops) await drop()
}, 60_000)

const database = async (label: string) => {
  const db = await freshDatabase(label)
  drops.push(db.drop)
  return db
}
const runner = async (url: string, root: string) => {
  const r = await startRunner(url, root, ...LEASE)
  procs.push(r)
  return r
}
/** A fresh database, a root with the toy experiment's script, and two runners listening on it. */
const twoRunners = async (label: string, iterations: number) => {
  const db = await database(label)
  const root = tempDir(`cluster-${label}`)
  const name = `toy-${label}`
  const script = toyExperimentScript(root, name, iterations)
  const runners = [await runner(db.url, root), await runner(db.url, root)]
  await waitFor("two runners listening", () => runners.every((r) => listening(r)()), 60_000)
  return { db, root, script, runners, folder: path.join(root, "experiments", name) }
}
const submit = (script: string, url: string, root: string) => {
  const p = etaflow(["experiment", "run", script, "--cluster", url, "--root", root])
  procs.push(p)
  return p
}

describe("an experiment on the cluster", () => {
  it(
    "run by two runners for two submitters at once, starts each run once and equals the local executor's",
    async () => {
      const { db, root, script, runners, folder } = await twoRunners("twice", 3)
      // Two submitters of the same experiment at once: the second joins the first's executions.
      await Promise.all([succeeded(submit(script, db.url, root)), succeeded(submit(script, db.url, root))])
      const log = runners.map((r) => r.output()).join("")
      for (const run of RUNS) {
        expect(log.split("\n").filter((l) => l.endsWith(`runs/${run}: starting`))).toHaveLength(1)
        expect(readManifest(runDir(folder, run))).toMatchObject({ status: "complete", iterations_complete: 3 })
        expect(readManifest(runDir(folder, run)).resumed_at).toBeUndefined()
      }
      const local = await localReference(script, 3)
      expect(await comparison(folder)).toBe(await comparison(local))
      for (const run of RUNS) expect(metricsOf(runDir(folder, run))).toBe(metricsOf(runDir(local, run)))
      // Submitting the finished experiment again starts nothing and changes no run.
      const before = RUNS.map((r) => fs.readFileSync(path.join(runDir(folder, r), "manifest.json"), "utf8"))
      const again = submit(script, db.url, root)
      await succeeded(again)
      expect(again.output()).toMatch(/every run is complete: nothing to submit/)
      expect(RUNS.map((r) => fs.readFileSync(path.join(runDir(folder, r), "manifest.json"), "utf8"))).toEqual(before)
    },
    300_000
  )

  it(
    "survives a runner killed with SIGKILL mid-run: another resumes it, and every run equals the local one",
    async () => {
      const { db, root, script, runners, folder } = await twoRunners("kill", 8)
      const client = submit(script, db.url, root)
      // The first run with two committed iterations, still running: kill its runner (the lock names it).
      const { run: victim, pid } = await runInFlight(folder, RUNS, 8)
      const killed = runners.find((r) => r.child.pid === pid)!
      expect(killed).toBeDefined()
      killed.child.kill("SIGKILL")
      expect(await killed.exited).toBe(137)
      await succeeded(client)
      const survivor = runners.find((r) => r !== killed)!
      expect(survivor.output()).toMatch(new RegExp(`runs/${victim}: resuming`))
      expect(readManifest(runDir(folder, victim)).resumed_at).toHaveLength(1)
      const local = await localReference(script, 8)
      for (const run of RUNS) {
        // Each iteration's metrics once, in order, the same bytes as the uninterrupted local run.
        expect(metricsOf(runDir(folder, run))).toBe(metricsOf(runDir(local, run)))
        expect(lastWeights(runDir(folder, run)).equals(lastWeights(runDir(local, run)))).toBe(true)
      }
      expect(await comparison(folder)).toBe(await comparison(local))
    },
    400_000
  )

  it("reports a run that failed on a runner, and submitted again runs it as a new attempt", async () => {
    const db = await database("retry")
    const root = tempDir("cluster-retry")
    const marker = path.join(root, "fail-now")
    fs.writeFileSync(marker, "")
    const script = failingExperimentScript(root, "walk-retry", marker)
    await runner(db.url, root)
    const first = submit(script, db.url, root)
    expect(await first.exited).toBe(1)
    expect(first.output()).toMatch(/walk\/seed-0: .*injected failure at iteration 1/)
    fs.rmSync(marker)
    const second = submit(script, db.url, root)
    await succeeded(second)
    expect(second.output()).toMatch(/walk\/seed-0: attempt 0 failed earlier \(.*injected failure.*\); retrying/)
    const folder = path.join(root, "experiments/walk-retry")
    const local = await localReference(script, 5)
    for (const run of ["walk/seed-0", "walk/seed-1"]) {
      expect(readManifest(runDir(folder, run))).toMatchObject({ status: "complete", iterations_complete: 5 })
      expect(metricsOf(runDir(folder, run))).toBe(metricsOf(runDir(local, run)))
    }
  }, 300_000)

  it("submitted while no runner is up, queues the runs; they start when a runner joins, with its threads", async () => {
    const db = await database("queued")
    const root = tempDir("cluster-queued")
    const script = toyExperimentScript(root, "toy-queued", 2)
    const client = submit(script, db.url, root)
    await waitFor("the submission", () => /submitted 4 run/.test(client.output()), 60_000)
    await new Promise((r) => setTimeout(r, 2000))
    const folder = path.join(root, "experiments/toy-queued")
    expect(RUNS.some((run) => fs.existsSync(runDir(folder, run)))).toBe(false)
    // --threads: the runs this runner starts record its thread count (the experiment leaves it at 2).
    procs.push(await startRunner(db.url, root, ...LEASE, "--threads", "1"))
    await succeeded(client)
    for (const run of RUNS) {
      expect(readManifest(runDir(folder, run))).toMatchObject({ status: "complete", config: { threads: 1 } })
    }
  }, 300_000)
})

describe("the cluster's refusals", () => {
  it(
    "exits 2 naming the host, port and database when PostgreSQL cannot be reached, before any folder exists",
    async () => {
      const root = tempDir("cluster-unreachable")
      const script = toyExperimentScript(root, "toy-unreachable", 2)
      const client = etaflow([
        "experiment",
        "run",
        script,
        "--cluster",
        "postgres://postgres@127.0.0.1:1/nowhere",
        "--root",
        root
      ])
      expect(await client.exited).toBe(2)
      expect(client.output()).toMatch(
        /cannot reach the cluster database nowhere at 127\.0\.0\.1:1 .*check that PostgreSQL/
      )
      expect(fs.existsSync(path.join(root, "experiments"))).toBe(false)
      const r = etaflow(["runner", "--cluster", "postgres://postgres@127.0.0.1:1/nowhere", "--root", root])
      expect(await r.exited).toBe(2)
      expect(r.output()).toMatch(/cannot reach the cluster database nowhere at 127\.0\.0\.1:1/)
    },
    60_000
  )

  it("exits 2 for a missing or unwritable root, a root without --cluster and --cluster without a root", async () => {
    const base = tempDir("cluster-roots")
    const file = path.join(base, "a-file")
    fs.writeFileSync(file, "")
    const url = "postgres://postgres@127.0.0.1:5432/postgres"
    const cases: Array<[ReadonlyArray<string>, RegExp]> = [
      [["runner", "--cluster", url, "--root", path.join(base, "missing")], /--root .*missing does not exist/],
      [["runner", "--cluster", url, "--root", file], /--root .*a-file is not a folder/],
      [["experiment", "run", "eta-sweep", "--cluster", url], /--cluster needs --root/],
      [["experiment", "run", "eta-sweep", "--root", base], /--root goes with --cluster/],
      [["runner", "--cluster", "mysql://x@h/db", "--root", base], /expected a postgres:\/\/ URL/]
    ]
    for (const [args, message] of cases) {
      const p = etaflow(args)
      expect(await p.exited, args.join(" ")).toBe(2)
      expect(p.output()).toMatch(message)
    }
    // A second runner on this machine without --address: its port is taken (here by a plain server).
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve))
    const port = (taken.address() as net.AddressInfo).port
    const second = etaflow(["runner", "--cluster", url, "--root", base, "--address", `127.0.0.1:${port}`])
    expect(await second.exited).toBe(2)
    expect(second.output()).toMatch(
      new RegExp(
        `--address 127\\.0\\.0\\.1:${port}: port ${port} is in use on this machine .*--address 127\\.0\\.0\\.1:${
          port + 1
        }`
      )
    )
    taken.close()
    expect(fs.readdirSync(base)).toEqual(["a-file"])
  }, 120_000)

  it("refuses a run submitted with another etaflow version (naming both) or from a script changed since", async () => {
    const root = tempDir("cluster-version")
    const execute = executeRun({
      cluster: parseClusterUrl("postgres://postgres@127.0.0.1:5432/unused"),
      root,
      address: { host: "127.0.0.1", port: 1 },
      runs: 1,
      timing: DEFAULT_TIMING,
      log: () => undefined
    })
    const request = {
      version: "0.0.0-elsewhere",
      experiment: "eta-sweep",
      scriptHash: "",
      seeds: 0,
      set: {},
      folder: "experiments/eta-sweep",
      arm: "eta1.0",
      seed: 0,
      attempt: 0
    }
    const error = await Effect.runPromise(Effect.flip(execute(request)))
    expect(error).toMatchObject({ _tag: "ClusterRunError", reason: "version", arm: "eta1.0", seed: 0 })
    expect(error.message).toMatch(
      new RegExp(`runs etaflow ${packageVersions().etaflow}; the run was submitted with etaflow 0\\.0\\.0-elsewhere`)
    )
    // A script edited after submission would plan other runs than the submitter's: refused as well.
    const script = toyExperimentScript(root, "edited", 2)
    const edited = {
      ...request,
      version: packageVersions().etaflow,
      experiment: "edited.mts",
      scriptHash: "0".repeat(64)
    }
    const stale = await Effect.runPromise(
      Effect.flip(execute({ ...edited, folder: "experiments/edited", arm: "frozen" }))
    )
    expect(stale).toMatchObject({
      reason: "script",
      message: `${script} changed since the experiment was submitted; submit it again`
    })
    expect(fs.readdirSync(root)).toEqual(["edited.mts"])
  })
})
