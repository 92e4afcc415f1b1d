/**
 * Cluster test helpers: a PostgreSQL database of the test's own (dropped afterwards), runner and
 * submitter processes of the real `etaflow` command, and bounded waits.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"

const SERVER = "postgres://postgres@127.0.0.1:5432"
const BIN = path.join(import.meta.dirname, "../../bin/etaflow.js")

const withDatabase = <A>(database: string, f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(
    Effect.scoped(PgClient.make({ url: Redacted.make(`${SERVER}/${database}`) }).pipe(Effect.flatMap(f))).pipe(
      Effect.provide(Reactivity.layer)
    )
  )
const admin = <A>(f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) => withDatabase("postgres", f)

/** A new empty database; its URL, and a function that drops it (connections closed first). */
export const freshDatabase = async (label: string) => {
  const name = `etaflow_${label}_${process.pid}_${Date.now() % 1e6}`
  await admin((sql) => sql.unsafe(`CREATE DATABASE ${name}`))
  return {
    url: `${SERVER}/${name}`,
    name,
    query: <A extends object>(text: string) => withDatabase(name, (sql) => sql.unsafe<A>(text)),
    drop: () => admin((sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  }
}

/** A TCP port nobody listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

export interface Proc {
  readonly child: ChildProcess
  /** Everything it printed so far. */
  readonly output: () => string
  /** Resolves with the exit code (the signal's 128 + n when killed). */
  readonly exited: Promise<number>
}

/** Runs `etaflow <args>` as its own process, with the test's environment (its model cache). */
export const etaflow = (args: ReadonlyArray<string>): Proc => {
  const child = spawn(process.execPath, [BIN, ...args], { env: process.env, stdio: ["ignore", "pipe", "pipe"] })
  let text = ""
  child.stdout!.on("data", (d) => (text += String(d)))
  child.stderr!.on("data", (d) => (text += String(d)))
  const exited = new Promise<number>((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? 128 + (signal === "SIGKILL" ? 9 : 15)))
  )
  return { child, output: () => text, exited }
}

/** A runner on localhost at a free port. */
export const startRunner = async (url: string, root: string, ...extra: ReadonlyArray<string>) => {
  const port = await freePort()
  const proc = etaflow(["runner", "--cluster", url, "--root", root, "--address", `127.0.0.1:${port}`, ...extra])
  return { ...proc, port }
}

/** Waits (polling every 100 ms) until `ready` holds; fails after `ms` naming what it waited for. */
export const waitFor = async (what: string, ready: () => boolean, ms: number): Promise<void> => {
  const deadline = Date.now() + ms
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Stops processes (SIGTERM, then SIGKILL after 5 s) and waits for them to exit. */
export const stopAll = async (procs: ReadonlyArray<Proc>) => {
  await Promise.all(procs.map(async (p) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return
    p.child.kill("SIGTERM")
    const timer = setTimeout(() => p.child.kill("SIGKILL"), 5000)
    await p.exited
    clearTimeout(timer)
  }))
}

/** An experiment script for the cluster tests: 2 arms × 2 seeds of flow-grpo on the double ring. */
export const toyExperimentScript = (dir: string, name: string, iterations: number): string => {
  const repo = path.join(import.meta.dirname, "../..")
  const file = path.join(dir, `${name}.mts`)
  fs.writeFileSync(
    file,
    `import { Experiment } from ${JSON.stringify(path.join(repo, "experiments/experiment.ts"))}
import { flowGrpo } from ${JSON.stringify(path.join(repo, "pipelines/flow-grpo.ts"))}
const common = {
  dataset: "double-ring", reward: "outer-ring", steps: "6", promptsPerIteration: "4", groupSize: "8",
  batchSize: "16", evalSteps: "6", evalSamplesPerPrompt: "32"
}
export default Experiment.define({
  name: ${JSON.stringify(name)},
  doc: "flow-grpo on the double ring without and with learning",
  seeds: 2,
  iterations: ${iterations},
  evaluate: { steps: [6], every: 1 },
  arms: [
    Experiment.arm("frozen", flowGrpo, { ...common, lr: 0 }),
    Experiment.arm("learning", flowGrpo, { ...common, lr: 3e-3 })
  ]
})
`
  )
  return file
}

/**
 * An experiment of the kernel's random-walk fixture (1 arm × 2 seeds, 5 iterations) whose runs fail at
 * iteration 1 while `marker` exists: a failure injected into the runner's process from the test.
 */
export const failingExperimentScript = (dir: string, name: string, marker: string): string => {
  const repo = path.join(import.meta.dirname, "../..")
  const file = path.join(dir, `${name}.mts`)
  fs.writeFileSync(
    file,
    `import * as fs from "node:fs"
import { Experiment } from ${JSON.stringify(path.join(repo, "experiments/experiment.ts"))}
import { faults, randomWalk } from ${JSON.stringify(path.join(repo, "test/fixtures/random-walk.ts"))}
Object.defineProperty(faults, "failAt", { get: () => (fs.existsSync(${JSON.stringify(marker)}) ? 1 : -1) })
export default Experiment.define({
  name: ${JSON.stringify(name)},
  doc: "a random walk that fails while a marker file exists",
  seeds: 2,
  arms: [Experiment.arm("walk", randomWalk, {})]
})
`
  )
  return file
}

/**
 * Waits (bounded) for one of `runs` (`arm/seed-k`) under the experiment folder to be running with at
 * least 2 and fewer than `before` iterations committed; returns it and the PID its lock names.
 */
export const runInFlight = async (folder: string, runs: ReadonlyArray<string>, before: number) => {
  let run = ""
  await waitFor("a run two iterations in", () => {
    run = runs.find((r) => {
      const dir = path.join(folder, "runs", r)
      if (!fs.existsSync(path.join(dir, "manifest.json")) || !fs.existsSync(path.join(dir, ".lock"))) return false
      const m = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as {
        status: string
        iterations_complete: number
      }
      return m.status === "running" && m.iterations_complete >= 2 && m.iterations_complete < before
    }) ?? ""
    return run !== ""
  }, 120_000)
  const lock = JSON.parse(fs.readFileSync(path.join(folder, "runs", run, ".lock"), "utf8")) as { pid: number }
  return { run, pid: lock.pid }
}
