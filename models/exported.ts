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
import { toOnnx } from "../engine/onnx.ts"
import type { ParamValues } from "../engine/params.ts"
import { EngineSession } from "../engine/session.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import { weightsFile } from "./cache.ts"
import { velocityGraph } from "./network-policy.ts"
import { velocityNet, type VelocityNetConfig } from "./networks.ts"

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

/** Writes policy.onnx, weights.safetensors and meta.json into `out` (created; each file atomically). */
export const writeExport = (out: string, params: ParamValues, meta: ExportMeta): ReadonlyArray<string> => {
  const specs = velocityNet(meta.net).specs
  for (const s of specs) {
    const size = s.shape.reduce((a, b) => a * b, 1)
    if (params[s.name]?.length !== size) {
      throw new Error(`export: weight ${s.name} has ${params[s.name]?.length ?? 0} values, the network needs ${size}`)
    }
  }
  const guided = meta.net.classes > 0 && meta.cfg !== 1
  const onnx = toOnnx(velocityGraph(meta.net, guided ? meta.cfg : undefined), {
    initializers: params,
    metadata: { etaflow_model: "velocity-mlp", process: meta.process, parameterization: meta.parameterization }
  })
  fs.mkdirSync(out, { recursive: true })
  const files = {
    "policy.onnx": onnx,
    "weights.safetensors": weightsFile(params, specs, { kind: "policy", source: meta.source.run }),
    "meta.json": JSON.stringify(meta, null, 2) + "\n"
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
