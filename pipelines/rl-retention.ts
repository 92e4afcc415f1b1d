/**
 * What an RL run folder keeps (`keep`), and `etaflow prune`, which thins an existing run folder to a
 * policy. Nothing a replay or a resume needs is lost without a way back: resume needs only the
 * newest checkpoint, which every policy keeps whole; a replay regenerates an iteration's trajectories
 * bit for bit from the weights before it, the seed and the thread count (the rollout is deterministic).
 *  - all: every trajectory file and every checkpoint whole;
 *  - default: the weights (and tracker, EMA) of every iteration, the last iteration's trajectories,
 *    AdamW moments in the newest checkpoint only;
 *  - minimal: metrics, evaluation, the report, the best and the last checkpoint (best: the `best`
 *    setting's metric, `bestIteration`); no trajectories. A replay needs the checkpoints it
 *    starts from, so a minimal run replays only from `evaluation` at the kept iterations.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { Retention } from "../kernel/pipeline.ts"
import { iterFile, manifestText, readManifest, readMetrics } from "../kernel/run-folder.ts"
import type { RlConfig } from "../nodes/rl/config.ts"
import { usesProxy } from "../nodes/setup/reward-classifier.ts"
import type { Keep } from "../schemas/retention.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { INDEX_DIR, PRUNED_FILE, prunedList, relName } from "../store/integrity.ts"

const isMoment = (file: string) => file.startsWith("adam_")

export const rlRetention = (keep: Keep): Retention => ({
  keepOutput: (dir, iteration, last) =>
    keep === "all" || dir !== "trajectories" || (keep === "default" && iteration === last),
  keepInOlderCheckpoint: (file) => keep === "all" || !isMoment(file)
})

/** The metric that picks a run's best checkpoint, and whether larger is better (`best` setting). */
export const bestMetricOf = (
  c: Pick<RlConfig, "best" | "reward" | "steps" | "task">
): { readonly metric: string; readonly larger: boolean } => {
  if (c.best !== "default") {
    return c.best.startsWith("min:") ? { metric: c.best.slice(4), larger: false } : { metric: c.best, larger: true }
  }
  // Against a proxy reward the gold is what the run is for (§13.4): on tilt the distance to the optimum (the real
  // digits of T; the judge's score saturates once every sample is a confident T), else the judge's score.
  if (usesProxy(c) && c.task === "tilt") return { metric: `eval.fd_target.s${c.steps}`, larger: false }
  return { metric: usesProxy(c) ? `eval.gold.s${c.steps}` : `eval.improvement.s${c.steps}`, larger: true }
}

/**
 * The evaluated iteration with the best value of the run's `best` metric (the largest, or the smallest for
 * `min:NAME`; default the ODE improvement at the training step count, the gold reward against a proxy);
 * the last on ties.
 */
export const bestIteration = (
  dir: string,
  config: Pick<RlConfig, "best" | "reward" | "steps" | "task">
): number | undefined => {
  const { metric, larger } = bestMetricOf(config)
  const rows = readMetrics(path.join(dir, "metrics.jsonl")).filter((r) => r.name === metric)
  return rows.reduce<{ iteration: number; value: number } | undefined>(
    (best, r) => (best === undefined || (larger ? r.value >= best.value : r.value <= best.value) ? r : best),
    undefined
  )?.iteration
}

const remove = (p: string) => fs.rmSync(p, { recursive: true, force: true })

/** Thins a complete or interrupted run folder to a retention policy; returns the paths removed. */
export const pruneRun = (dir: string, keep: Keep): Array<string> => {
  const manifest = readManifest(dir)
  const config = manifest.config as RlConfig
  const done = manifest.iterations_complete
  const retention = rlRetention(keep)
  const removed: Array<string> = []
  const trajectories = path.join(dir, "trajectories")
  for (let i = 0; i < done && fs.existsSync(trajectories); i++) {
    const file = path.join(trajectories, `${iterFile(i)}.parquet`)
    if (fs.existsSync(file) && !retention.keepOutput("trajectories", i, done - 1)) removed.push(file)
  }
  const best = keep === "minimal" ? bestIteration(dir, bestSettings(config)) : undefined
  for (let i = 0; i < done - 1; i++) {
    const ckpt = path.join(dir, "checkpoints", iterFile(i))
    if (!fs.existsSync(ckpt)) continue
    if (keep === "minimal" && i !== best) removed.push(ckpt)
    else {removed.push(
        ...fs.readdirSync(ckpt).filter((f) => !retention.keepInOlderCheckpoint(f)).map((f) => path.join(ckpt, f))
      )}
  }
  // Recorded as pruned before they go: a folder interrupted here holds files it no longer vouches for, never a
  // recorded file that is gone (which `verify`, resume and replay would rightly call damage).
  const rels = removed.map((f) => relName(dir, f))
  writeFileAtomic(path.join(dir, INDEX_DIR, PRUNED_FILE), prunedList(dir, rels))
  removed.forEach(remove)
  // The manifest records the policy the folder now follows (its config, as a resume would read it).
  writeFileAtomic(path.join(dir, "manifest.json"), manifestText({ ...manifest, config: { ...manifest.config, keep } }))
  return removed
}

/** A stored config's `best` fields, with the defaults of runs made before the setting existed. */
export const bestSettings = (c: Partial<RlConfig>): Pick<RlConfig, "best" | "reward" | "steps" | "task"> => ({
  best: c.best ?? "default",
  reward: c.reward ?? "default",
  steps: c.steps ?? 0,
  task: c.task ?? "prompted"
})
