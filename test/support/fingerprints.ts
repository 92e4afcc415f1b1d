/**
 * Fingerprints of every registered pipeline on a small fixed configuration: the SHA-256 of its
 * metrics.jsonl and of each weights file it wrote. A refactor that claims "behaviour unchanged" records
 * them before and checks them after (test/pipelines/fingerprints.test.ts). Float results are bit-exact
 * only on the same CPU kernels, so a record names the instruction sets onnxruntime's MLAS picks from.
 */
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { runPipeline } from "../../kernel/run.ts"
import { pipelines } from "../../pipelines/registry.ts"
import { tempRun, toyRl } from "./runs.ts"

/** Settings per pipeline: the toys where a pipeline takes them, a few iterations, seconds each. */
export const FINGERPRINT_CONFIGS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  quickstart: { ...toyRl, task: "prompted", groupSize: "2", promptsPerIteration: "8", batchSize: "4", iterations: "2" },
  dataset: { name: "double-ring", n: "500" },
  "sampler-check": { sampler: "all", chains: "64" },
  "theory-gap": { steps: "50", chains: "400", sweepT: "0.5,2" },
  pretrain: { dataset: "double-ring", points: "2000", hidden: "64", blocks: "1", steps: "100", evalSamples: "200" },
  "reward-model": { hidden: "64", epochs: "1", shift: "0" },
  "flow-grpo": { ...toyRl, iterations: "2" },
  "dance-grpo": { ...toyRl, iterations: "2" },
  mixgrpo: { ...toyRl, iterations: "2", windowSize: "2" },
  precise: { ...toyRl, iterations: "2" },
  ddpo: { ...toyRl, iterations: "2" },
  sdpo: { ...toyRl, groupSize: "2", promptsPerIteration: "8", batchSize: "4", iterations: "2" },
  "adjoint-matching": { ...toyRl, iterations: "2" },
  "deterministic-am": { ...toyRl, iterations: "2", adjointSteps: "3" },
  "diffusion-nft": { ...toyRl, iterations: "2" },
  awm: { ...toyRl, iterations: "2" }
}

/** The x86 instruction sets that decide which float kernels onnxruntime runs ("" off Linux). */
export const cpuKernelSignature = (): string => {
  const info = fs.existsSync("/proc/cpuinfo") ? fs.readFileSync("/proc/cpuinfo", "utf8") : ""
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? "").split(/\s+/))
  return ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vnni", "avx_vnni", "amx_tile"].filter((f) => flags.has(f))
    .join(",")
}

const sha = (bytes: Uint8Array) => crypto.createHash("sha256").update(bytes).digest("hex")

const weightFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) =>
    e.isFile() && e.name.endsWith(".safetensors")
  )
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort()

/** Runs one registered pipeline on its fingerprint configuration; metrics.jsonl and weights hashed. */
export const fingerprint = async (name: string): Promise<Record<string, string>> => {
  const pipeline = pipelines.find((p) => p.name === name)
  if (pipeline === undefined) throw new Error(`no registered pipeline ${name}`)
  const dir = tempRun(`fingerprint-${name}`)
  await Effect.runPromise(runPipeline(pipeline, { out: dir, progress: "none", set: FINGERPRINT_CONFIGS[name] }))
  return Object.fromEntries([
    ["metrics.jsonl", sha(fs.readFileSync(path.join(dir, "metrics.jsonl")))],
    ...weightFiles(dir).map((f) => [f, sha(fs.readFileSync(path.join(dir, f)))])
  ])
}
