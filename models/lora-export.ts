/**
 * A LoRA policy for use outside etaflow: the base network with the adapters merged into its weights —
 * computed by onnxruntime with the very ops the policy's graphs apply (W + (α/r)·B·A, models/lora.ts), so
 * the merged network's outputs are the adapted one's bit for bit — and the adapters alone under peft's
 * names (`base_model.model.<module>.lora_A.weight`, [r, in(, kh, kw)]; `lora_B.weight`, [out, r(, 1, 1)])
 * with peft's `adapter_config.json`.
 */
import { Graph } from "../engine/graph.ts"
import type { ParamValues } from "../engine/params.ts"
import { EngineSession } from "../engine/session.ts"
import { adaptedWeight, frozenWeights } from "./lora.ts"
import { type LoraNetConfig, velocityNet } from "./velocity-net.ts"

/** The base network's weights with the adapters merged in. */
export const mergeLora = async (cfg: LoraNetConfig, adapters: ParamValues): Promise<ParamValues> => {
  const base = velocityNet(cfg.base)
  const frozen = frozenWeights(cfg.frozen)
  const g = new Graph("lora-merge")
  for (const name of cfg.targets) {
    const spec = base.specs.find((s) => s.name === name)!
    const w = g.input(name, "float32", spec.shape)
    const a = g.input(`${name}.lora_A`, "float32", [cfg.rank, spec.shape.slice(1).reduce((p, q) => p * q, 1)])
    const b = g.input(`${name}.lora_B`, "float32", [spec.shape[0], cfg.rank])
    g.output(`merged.${name}`, adaptedWeight(w, a, b, cfg.alpha / cfg.rank))
  }
  const session = await EngineSession.create(g, { threads: 1 })
  const feeds = Object.fromEntries(
    g.inputs.map((i) => [
      i.name,
      { data: i.name.includes(".lora_") ? adapters[i.name] : frozen[i.name], dims: i.tensor.shape as Array<number> }
    ])
  )
  const out = await session.run(feeds)
  await session.release()
  return Object.fromEntries(
    base.specs.map((
      s
    ) => [s.name, cfg.targets.includes(s.name) ? (out[`merged.${s.name}`].data as Float32Array) : frozen[s.name]])
  )
}

const transpose = (data: Float32Array, rows: number, cols: number): Float32Array => {
  const out = new Float32Array(data.length)
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j]
  return out
}

/**
 * The adapters in peft's layout: a weight whose output side is axis 0 (PyTorch's Linear and Conv) keeps A
 * and B; an [in, out] matrix (x·W) stores ΔWᵀ = Aᵀ·Bᵀ, so peft's A is Bᵀ and its B is Aᵀ.
 */
export const peftAdapters = (cfg: LoraNetConfig, adapters: ParamValues) => {
  const base = velocityNet(cfg.base)
  const tensors: Record<string, { data: Float32Array; shape: ReadonlyArray<number> }> = {}
  const modules: Array<string> = []
  for (const name of cfg.targets) {
    const shape = base.specs.find((s) => s.name === name)!.shape
    const module = name.replace(/\.(weight|w)$/, "")
    modules.push(module)
    const key = (f: "A" | "B") => `base_model.model.${module}.lora_${f}.weight`
    const [a, b] = [adapters[`${name}.lora_A`], adapters[`${name}.lora_B`]]
    const rest = shape.slice(1).reduce((p, q) => p * q, 1)
    if (base.adaptable[name].outAxis === 0) {
      tensors[key("A")] = { data: a, shape: [cfg.rank, ...shape.slice(1)] }
      tensors[key("B")] = { data: b, shape: [shape[0], cfg.rank, ...shape.slice(2).map(() => 1)] }
    } else {
      tensors[key("A")] = { data: transpose(b, shape[0], cfg.rank), shape: [cfg.rank, shape[0]] }
      tensors[key("B")] = { data: transpose(a, cfg.rank, rest), shape: [rest, cfg.rank] }
    }
  }
  const config = { peft_type: "LORA", r: cfg.rank, lora_alpha: cfg.alpha, target_modules: modules, bias: "none" }
  return { tensors, config }
}
