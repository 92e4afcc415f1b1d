/**
 * Trained-model cache: `runs/.cache/<kind>-<hash>/` (or $ETAFLOW_CACHE), keyed by a hash of
 * everything that determines the weights (kind, training config, seed, format version), so later
 * pipelines reuse a pretrained base or reward model instead of training it again. An entry holds
 * `weights.safetensors`, `model.onnx` (weights baked in) and `meta.json`; it is written atomically.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ParamSpec, ParamValues } from "../engine/params.ts"
import { readSafetensors, writeSafetensors } from "../engine/safetensors.ts"
import { writeDirAtomic } from "../store/atomic.ts"

const FORMAT = 1

export const cacheRoot = (): string => process.env.ETAFLOW_CACHE ?? path.join("runs", ".cache")

export const cacheKey = (kind: string, config: unknown): string =>
  `${kind}-${createHash("sha256").update(JSON.stringify({ kind, config, format: FORMAT })).digest("hex").slice(0, 16)}`

export interface CachedModel {
  readonly dir: string
  readonly params: ParamValues
  readonly meta: Readonly<Record<string, unknown>>
}

export const weightsFile = (
  params: ParamValues,
  specs: ReadonlyArray<ParamSpec>,
  metadata: Record<string, string>
): Uint8Array =>
  writeSafetensors(Object.fromEntries(specs.map((s) => [s.name, { data: params[s.name], shape: s.shape }])), metadata)

export const loadCached = (kind: string, config: unknown, specs: ReadonlyArray<ParamSpec>): CachedModel | undefined => {
  const dir = path.join(cacheRoot(), cacheKey(kind, config))
  const file = path.join(dir, "weights.safetensors")
  if (!fs.existsSync(file) || !fs.existsSync(path.join(dir, "meta.json"))) return undefined
  const { tensors } = readSafetensors(new Uint8Array(fs.readFileSync(file)), file)
  for (const s of specs) {
    const t = tensors[s.name]
    if (t === undefined || t.data.length !== s.shape.reduce((a, b) => a * b, 1)) {
      throw new Error(`${file}: tensor ${s.name} is missing or has the wrong size; delete ${dir} to retrain`)
    }
  }
  return {
    dir,
    params: Object.fromEntries(specs.map((s) => [s.name, tensors[s.name].data])),
    meta: JSON.parse(fs.readFileSync(path.join(dir, "meta.json"), "utf8"))
  }
}

export const storeCached = (
  kind: string,
  config: unknown,
  files: { readonly weights: Uint8Array; readonly onnx: Uint8Array },
  meta: Readonly<Record<string, unknown>>
): string => {
  const dir = path.join(cacheRoot(), cacheKey(kind, config))
  fs.mkdirSync(path.dirname(dir), { recursive: true })
  writeDirAtomic(dir, {
    "weights.safetensors": files.weights,
    "model.onnx": files.onnx,
    "meta.json": JSON.stringify({ kind, config, created_at: new Date().toISOString(), ...meta }, null, 2) + "\n"
  })
  return dir
}
