/**
 * An exported policy: `policy.onnx` (the network with its weights baked in; inputs x [B, d], t [B]
 * in model time, c [B] class indices for conditional models; output f [B, d], guided when a CFG scale
 * is folded in), `weights.safetensors`, and `meta.json` saying what f means (process,
 * parameterisation, time convention) and where it came from. Any ONNX runtime runs the file; this
 * module writes an export and reads one back as a Policy the samplers can call.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { Policy } from "../diffusion/policy.ts"
import { type Parameterization, rectifiedFlow, vpDiscrete, type VpSchedule } from "../diffusion/process.ts"
import { withWeights } from "../engine/onnx-import.ts"
import { toOnnx } from "../engine/onnx.ts"
import type { ParamValues } from "../engine/params.ts"
import { writeSafetensors } from "../engine/safetensors.ts"
import { EngineSession } from "../engine/session.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { weightsFile } from "./cache.ts"
import { mergeLora, peftAdapters } from "./lora-export.ts"
import { contractFileOf } from "./model-contract.ts"
import { velocityGraph } from "./network-policy.ts"
import { onnxBytes } from "./onnx-net.ts"
import { baseNetOf, describeNet, velocityNet, type VelocityNetConfig } from "./velocity-net.ts"

export interface ExportMeta {
  readonly format: "etaflow.policy/1"
  readonly net: VelocityNetConfig
  readonly process: "rf" | "vp"
  readonly schedule: VpSchedule
  readonly parameterization: Parameterization
  /** The CFG scale folded into the graph (1: the plain conditional network). */
  readonly cfg: number
  readonly shape: ReadonlyArray<number>
  readonly time_convention: string
  readonly source: {
    readonly run: string
    readonly pipeline: string
    readonly iteration: number
    readonly ema: boolean
  }
}

/**
 * The files a LoRA policy adds: its adapters alone (peft's names and adapter_config.json); and an imported
 * policy's: its own file with the fine-tuned weights, beside its contract.
 */
const extraFiles = (
  net: VelocityNetConfig,
  params: ParamValues,
  merged: ParamValues
): Record<string, Uint8Array | string> => {
  const files: Record<string, Uint8Array | string> = {}
  if ("arch" in net && net.arch === "lora") {
    const peft = peftAdapters(net, params)
    files["adapters.safetensors"] = writeSafetensors(peft.tensors, { format: "pt", source: "etaflow" })
    files["adapter_config.json"] = JSON.stringify(peft.config, null, 2) + "\n"
  }
  const base = baseNetOf(net)
  if ("arch" in base && base.arch === "onnx") {
    files["model.onnx"] = withWeights(onnxBytes(base), merged)
    files["model.json"] = fs.readFileSync(contractFileOf(base.file), "utf8")
  }
  return files
}

/**
 * Writes policy.onnx (the network, LoRA adapters merged in), weights.safetensors and meta.json into `out`
 * (created; each file atomically), and for LoRA and imported policies the files `extraFiles` adds.
 */
export const writeExport = async (
  out: string,
  params: ParamValues,
  meta: ExportMeta
): Promise<ReadonlyArray<string>> => {
  for (const s of velocityNet(meta.net).specs) {
    const size = s.shape.reduce((a, b) => a * b, 1)
    if (params[s.name]?.length !== size) {
      throw new Error(`export: weight ${s.name} has ${params[s.name]?.length ?? 0} values, the network needs ${size}`)
    }
  }
  const lora = "arch" in meta.net && meta.net.arch === "lora" ? meta.net : undefined
  const merged = lora === undefined ? params : await mergeLora(lora, params)
  const net = baseNetOf(meta.net)
  const guided = net.classes > 0 && meta.cfg !== 1
  const onnx = toOnnx(velocityGraph(net, guided ? meta.cfg : undefined), {
    initializers: merged,
    metadata: { etaflow_model: describeNet(net), process: meta.process, parameterization: meta.parameterization }
  })
  fs.mkdirSync(out, { recursive: true })
  const files = {
    "policy.onnx": onnx,
    "weights.safetensors": weightsFile(merged, velocityNet(net).specs, { kind: "policy", source: meta.source.run }),
    // The merged network is what the files hold; a LoRA's rank, α and adapted weights are kept beside it.
    "meta.json": JSON.stringify(
      {
        ...meta,
        net,
        ...(lora === undefined ? {} : { lora: { rank: lora.rank, alpha: lora.alpha, targets: lora.targets } })
      },
      null,
      2
    ) + "\n",
    ...extraFiles(meta.net, params, merged)
  }
  for (const [name, data] of Object.entries(files)) writeFileAtomic(path.join(out, name), data)
  return Object.keys(files).map((f) => path.join(out, f))
}

/** An exported policy as a Policy the samplers can call (the caller releases it). */
export const readExport = async (
  dir: string,
  threads: number
): Promise<Policy & { readonly session: EngineSession; readonly release: () => Promise<void> }> => {
  const metaFile = path.join(dir, "meta.json")
  if (!fs.existsSync(metaFile)) throw new Error(`${dir} is not an exported policy: ${metaFile} is missing`)
  const meta = JSON.parse(fs.readFileSync(metaFile, "utf8")) as ExportMeta
  const session = await EngineSession.fromBytes(
    "policy",
    new Uint8Array(fs.readFileSync(path.join(dir, "policy.onnx"))),
    {
      threads
    }
  )
  const process = meta.process === "rf" ? rectifiedFlow : vpDiscrete(meta.schedule)
  return {
    name: `exported(${meta.source.pipeline}@${meta.source.iteration})`,
    shape: meta.shape,
    process,
    parameterization: meta.parameterization,
    session,
    release: () => session.release(),
    predict: async (x, batch, t, condition) => {
      const feeds: Parameters<EngineSession["run"]>[0] = {
        x: { data: x, dims: [batch, meta.net.dim] },
        t: { data: new Float32Array(batch).fill(process.modelTime(t)), dims: [batch] },
        ...(meta.net.classes > 0
          ? { c: { data: BigInt64Array.from(condition ?? [], (v) => BigInt(v)), dims: [batch] } }
          : {})
      }
      return (await session.run(feeds)).f.data as Float32Array
    }
  }
}
