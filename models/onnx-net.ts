/**
 * An imported policy (docs/byom.md): a velocity / ε / x0 network exported to ONNX elsewhere, whose
 * graph is read into the engine (engine/onnx-import.ts) so every pipeline trains its weights. The
 * config names the file and its content hash; the contract fields (models/model-contract.ts) say how
 * etaflow's flat latents, model time and classes map onto the graph's inputs.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import type { Tensor } from "../engine/graph.ts"
import { decodeOnnx, importOnnx, onnxWeights } from "../engine/onnx-import.ts"
import * as op from "../engine/ops.ts"
import { guidance, type VelocityNet } from "./networks.ts"

export interface OnnxNetConfig {
  readonly arch: "onnx"
  /** The .onnx file, absolute. */
  readonly file: string
  readonly sha256: string
  /** Elements of a latent: the product of `latentShape`. */
  readonly dim: number
  /** Condition classes, the null condition at index `classes` (0: unconditional). */
  readonly classes: number
  readonly latentShape: ReadonlyArray<number>
  readonly inputs: { readonly latent: string; readonly time: string; readonly class?: string | undefined }
  readonly output: string
  /** The graph's time input: model time t ∈ [0, 1] ("unit") or 1000·t ("thousand", diffusers' timesteps). */
  readonly time: "unit" | "thousand"
}

const BYTES = new Map<string, Uint8Array>()

export const sha256Of = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/** The file's bytes, checked against the hash the config was made with (read once per process). */
export const onnxBytes = (cfg: Pick<OnnxNetConfig, "file" | "sha256">): Uint8Array => {
  const key = `${cfg.file}|${cfg.sha256}`
  const hit = BYTES.get(key)
  if (hit !== undefined) return hit
  if (!fs.existsSync(cfg.file)) throw new Error(`imported policy ${cfg.file}: file not found`)
  const bytes = new Uint8Array(fs.readFileSync(cfg.file))
  const sha = sha256Of(bytes)
  if (sha !== cfg.sha256) {
    throw new Error(
      `imported policy ${cfg.file}: its content changed (sha256 ${sha}, the run was made with ${cfg.sha256})`
    )
  }
  BYTES.set(key, bytes)
  return bytes
}

/** Which axis of each matrix-product or convolution weight is its output side, from the ops that read it. */
const adaptableWeights = (bytes: Uint8Array): Record<string, { readonly outAxis: 0 | 1 }> => {
  const graph = decodeOnnx(bytes).graph
  const weights = new Set(onnxWeights(bytes).filter((w) => w.dims.length >= 2).map((w) => w.name))
  const nodes = graph?.node ?? []
  const out: Record<string, { readonly outAxis: 0 | 1 }> = {}
  for (const node of nodes) {
    let name = node.input?.[1] ?? ""
    let transposed = false
    // PyTorch's unfolded Linear: weight [out, in] → Transpose → MatMul.
    const producer = nodes.find((n) => n.opType === "Transpose" && n.output?.[0] === name)
    if (producer !== undefined) [name, transposed] = [producer.input?.[0] ?? "", true]
    if (!weights.has(name)) continue
    const transB = (node.attribute ?? []).find((a) => a.name === "transB")?.i
    const axis = node.opType === "Conv" ? 0 : node.opType === "ConvTranspose" ? 1 : node.opType === "MatMul"
      ? (transposed ? 0 : 1)
      : node.opType === "Gemm"
      ? (Number(transB ?? 0) === 1) !== transposed ? 0 : 1
      : undefined
    if (axis !== undefined) out[name] = { outAxis: axis }
  }
  return out
}

export const onnxNet = (cfg: OnnxNetConfig): VelocityNet<OnnxNetConfig> => {
  const bytes = onnxBytes(cfg)
  const specs = onnxWeights(bytes).map((w) => ({ name: w.name, shape: w.dims, init: "zeros" as const }))
  const forward: VelocityNet["forward"] = (g, p, x, t, c) => {
    const B = x.shape[0]
    const latent = op.reshape(x, [-1, ...cfg.latentShape], [B, ...cfg.latentShape])
    const bound: Record<string, Tensor> = {
      [cfg.inputs.latent]: latent,
      [cfg.inputs.time]: cfg.time === "thousand" ? op.mul(t, 1000) : t
    }
    if (cfg.inputs.class !== undefined) {
      if (c === undefined) throw new Error(`imported policy ${cfg.file}: a conditional network needs class indices`)
      bound[cfg.inputs.class] = c
    }
    const out = importOnnx(g, bytes, bound, cfg.file, { weights: p })[cfg.output]
    return op.reshape(out, [-1, cfg.dim], [B, cfg.dim])
  }
  return { specs, forward, guided: guidance(forward, cfg.classes), adaptable: adaptableWeights(bytes), config: cfg }
}

/** The file's weights: the imported base's parameters. */
export const onnxParams = (cfg: OnnxNetConfig): Record<string, Float32Array> =>
  Object.fromEntries(onnxWeights(onnxBytes(cfg)).map((w) => [w.name, w.data]))
