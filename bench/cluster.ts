/**
 * The cluster's overheads (needs the machine's PostgreSQL): dispatch (submit → the run's folder opened
 * by a runner, before its first iteration; model loading comes after and is not counted), fail-over
 * (runner killed with SIGKILL → the run resumed by another), and the database traffic per run, at two
 * iteration counts — it must not grow with iterations — beside the idle traffic of two runners.
 * Runs are the double-ring toy (2 arms × 2 seeds of flow-grpo); base models are trained beforehand.
 */
import { Effect } from "effect"
import * as path from "node:path"
import { parseClusterUrl } from "../experiments/cluster/database.ts"
import { clusterExecutor } from "../experiments/cluster/executor.ts"
import { DEFAULT_TIMING } from "../experiments/cluster/timing.ts"
import { loadExperiment } from "../experiments/load.ts"
import { runExperiment } from "../experiments/run.ts"
import { readManifest } from "../kernel/run-folder.ts"
import {
  etaflow,
  freshDatabase,
  runInFlight,
  startRunner,
  stopAll,
  toyExperimentScript,
  waitFor
} from "../test/support/cluster.ts"
import { isolateCache, tempDir } from "../test/support/runs.ts"
import type { BenchLine } from "./line.ts"

const RUNS = ["frozen/seed-0", "frozen/seed-1", "learning/seed-0", "learning/seed-1"]
const LEASE_S = 5
const TABLES = ["cluster_messages", "cluster_replies", "etaflow_run_queue"]

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

type Db = Awaited<ReturnType<typeof freshDatabase>>

/** Transactions and row writes of this database so far, and the rows the cluster keeps. */
const traffic = async (db: Db) => {
  const [stat] = await db.query<{ xact: string; writes: string }>(
    `SELECT xact_commit + xact_rollback AS xact, tup_inserted + tup_updated + tup_deleted AS writes
     FROM pg_stat_database WHERE datname = '${db.name}'`
  )
  let rows = 0
  for (const t of TABLES) rows += Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${t}`))[0].n)
  return { xact: Number(stat.xact), writes: Number(stat.writes), rows }
}

/** Runs an experiment through the cluster from this process; the submit instant and the folder. */
const submit = async (db: Db, root: string, name: string, iterations: number) => {
  const script = toyExperimentScript(root, name, iterations)
  const def = await loadExperiment(script)
  const folder = path.join(root, "experiments", name)
  const executor = clusterExecutor({
    cluster: parseClusterUrl(db.url),
    root,
    experiment: script,
    seeds: 0,
    set: {},
    folder,
    timing: DEFAULT_TIMING,
    log: () => undefined
  })
  const at = Date.now()
  await Effect.runPromise(runExperiment(def, { out: folder, executor }))
  return { at, folder }
}

export const clusterBench = async (emit: (line: BenchLine) => void) => {
  isolateCache("bench-cluster")
  const root = tempDir("bench-cluster")
  const db = await freshDatabase("bench")
  // Base models of seeds 0 and 1 trained once, locally, so that no run below waits for them.
  const warm = etaflow(["experiment", "run", toyExperimentScript(root, "warm", 1), "--out", path.join(root, "warm")])
  if ((await warm.exited) !== 0) throw new Error(warm.output())
  const runners = [
    await startRunner(db.url, root, "--lease", String(LEASE_S)),
    await startRunner(db.url, root, "--lease", String(LEASE_S))
  ]
  try {
    await waitFor("two runners", () => runners.every((r) => /Listening on/.test(r.output())), 60_000)
    const idle0 = await traffic(db)
    const idleStart = Date.now()
    await new Promise((r) => setTimeout(r, 10_000))
    const idle1 = await traffic(db)
    const idleSeconds = (Date.now() - idleStart) / 1000
    emit({
      name: "cluster_idle_transactions_per_second",
      value: (idle1.xact - idle0.xact) / idleSeconds,
      unit: "transactions/s",
      detail: "two idle runners: shard-lock refreshes, message and queue polling"
    })
    const dispatch: Array<number> = []
    for (const [iterations, label] of [[3, "a"], [30, "b"]] as const) {
      const before = await traffic(db)
      const { at, folder } = await submit(db, root, `traffic-${label}`, iterations)
      const after = await traffic(db)
      const started = RUNS.map((r) => Date.parse(readManifest(path.join(folder, "runs", r)).created_at)).sort()
      // The first two runs meet idle runners; the others wait for a free one (queueing, not dispatch).
      dispatch.push(started[0] - at, started[1] - at)
      const detail = `${iterations} iterations per run, ${RUNS.length} runs`
      emit({
        name: `cluster_rows_per_run_${iterations}_iterations`,
        value: (after.rows - before.rows) / 4,
        unit: "rows",
        detail
      })
      emit({
        name: `cluster_transactions_per_run_${iterations}_iterations`,
        value: (after.xact - before.xact) / 4,
        unit: "transactions",
        detail: `${detail}; includes the polling of ${((Date.now() - at) / 1000).toFixed(0)} s`
      })
    }
    emit({
      name: "cluster_dispatch_ms",
      value: median(dispatch),
      unit: "ms",
      detail: `median of ${dispatch.join(", ")}`
    })
    emit({
      name: "cluster_failover_ms",
      value: await failover(db, root, runners),
      unit: "ms",
      detail: `lease ${LEASE_S} s`
    })
  } finally {
    await stopAll(runners)
    await db.drop()
  }
}

/** Kills the runner holding a run two iterations in; the time until another runner resumed it. */
const failover = async (db: Db, root: string, runners: ReadonlyArray<Awaited<ReturnType<typeof startRunner>>>) => {
  const script = toyExperimentScript(root, "failover", 12)
  const client = etaflow(["experiment", "run", script, "--cluster", db.url, "--root", root])
  const folder = path.join(root, "experiments/failover")
  const { run: victim, pid } = await runInFlight(folder, RUNS, 10)
  const dir = path.join(folder, "runs", victim)
  runners.find((r) => r.child.pid === pid)!.child.kill("SIGKILL")
  const killed = Date.now()
  await waitFor("the run resumed", () => (readManifest(dir).resumed_at ?? []).length > 0, 120_000)
  const resumed = Date.parse(readManifest(dir).resumed_at![0])
  if ((await client.exited) !== 0) throw new Error(client.output())
  return resumed - killed
}
