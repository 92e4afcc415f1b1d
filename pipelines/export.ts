/**
 * `etaflow export <run> [--iteration N|best|last] [--ema] [--cfg S] --out DIR`: the policy of an RL
 * run at an iteration (the best: by the run's `best` metric, `bestIteration`) as
 * `policy.onnx` + `weights.safetensors` + `meta.json` (models/exported.ts).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { UsageError } from "../kernel/errors.ts"
import { readCheckpoint } from "../kernel/integrity.ts"
import { iterFile, readManifest } from "../kernel/run-folder.ts"
import { writeExport } from "../models/exported.ts"
import type { RlConfig } from "../nodes/rl/config.ts"
import { decodeRlState } from "../nodes/rl/state.ts"
import { storedPolicyNet } from "../nodes/setup/policy-model.ts"
import { storedFiles } from "../store/integrity.ts"
import { bestIteration, bestSettings } from "./rl-retention.ts"

export interface ExportOptions {
  readonly iteration: "best" | "last" | number
  /** Export the EMA of the weights (when the run kept one) instead of the weights. */
  readonly ema: boolean
  /** CFG scale folded into the graph (default: the run's `cfg`). */
  readonly cfg?: number
  readonly out: string
}

const VP_PIPELINES = new Set(["ddpo", "sdpo", "quickstart"])

const fail = (message: string): never => {
  throw new UsageError({ message: `export: ${message}` })
}

/** Writes the export and returns its files. */
export const exportRun = async (run: string, options: ExportOptions): Promise<ReadonlyArray<string>> => {
  const manifest = readManifest(run)
  const config = manifest.config as Partial<RlConfig> & {
    readonly sampler?: string
    readonly process?: "rf" | "vp"
  }
  if (config.sampler === undefined || config.dataset === undefined) {
    fail(`${run} is a ${manifest.pipeline} run, not an RL run`)
  }
  const last = manifest.iterations_complete - 1
  if (last < 0) fail(`${run} has no complete iteration`)
  const iteration = options.iteration === "last"
    ? last
    : options.iteration === "best"
    ? bestIteration(run, bestSettings(config)) ?? fail(`${run} has no evaluation to pick the best iteration from`)
    : options.iteration
  if (iteration > last) fail(`${run} has ${last + 1} complete iterations; iteration ${iteration} is not one of them`)
  const dir = path.join(run, "checkpoints", iterFile(iteration))
  // Every file of the checkpoint is checked against the hash its commit recorded before it is decoded.
  const files = storedFiles(run, manifest.iterations_complete)
  if (!fs.existsSync(path.join(dir, "state.json")) && files.check(dir).length === 0) {
    fail(`${dir} is missing: the run did not keep iteration ${iteration}`)
  }
  const state = decodeRlState(readCheckpoint(files, iteration))
  if (state === null) return fail(`${dir} holds no policy (it is the state before the first update)`)
  const params = options.ema
    ? state.ema ?? fail(`${dir} has no EMA of the weights (the run had ema = 0)`)
    : state.params
  // The forward-process pipelines name their base in the `process` setting; the others by what they are.
  const process = config.process ?? (VP_PIPELINES.has(manifest.pipeline) ? "vp" : "rf")
  return writeExport(options.out, params, {
    format: "etaflow.policy/1",
    net: storedPolicyNet(
      {
        base: "default",
        arch: "mlp",
        lora: 0,
        loraAlpha: 0,
        loraTargets: "*",
        threads: 2,
        ...config,
        dataset: config.dataset!
      },
      process,
      manifest.seed
    ),
    process,
    schedule: "scaled-linear",
    parameterization: process === "rf" ? "velocity" : "epsilon",
    cfg: options.cfg ?? config.cfg ?? 1,
    shape: config.dataset === "mnist" ? [28, 28] : [2],
    time_convention: process === "rf"
      ? "rectified flow, t = σ ∈ [0, 1], σ = 1 noise"
      : "VP scaled-linear, integer timesteps 0..999",
    source: { run, pipeline: manifest.pipeline, iteration, ema: options.ema }
  })
}
