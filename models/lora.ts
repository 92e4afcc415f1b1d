/**
 * LoRA (arXiv:2106.09685; peft's `LoraLayer`): the base network frozen, and on each adapted weight
 * W (a matrix product's or a convolution's) a rank-r update W + (α/r)·B·A, with W viewed as the matrix
 * [W.shape[0], rest] and B [W.shape[0], r], A [r, rest]. The factor on the weight's output side starts
 * at zero (peft's `lora_B`), so the adapted network starts as the base bit for bit — and the KL
 * reference of every pipeline, the initial policy, is the frozen base. The other starts as peft's
 * kaiming-uniform(a = √5) in variance: 1/(3·fan-in).
 *
 * Only the adapters are parameters: the base's weights enter each graph as constants from a
 * registry keyed by their content hash, so configs stay small and a run folder stores adapters only.
 */
import { createHash } from "node:crypto"
import type { Graph, Tensor } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import type { ParamSpec, ParamValues } from "../engine/params.ts"
import { guidance, type VelocityNet } from "./networks.ts"

export interface LoraOptions {
  readonly rank: number
  readonly alpha: number
  /** The adapted weights' names. */
  readonly targets: ReadonlyArray<string>
  /** The registry key of the frozen base weights (`registerFrozen`). */
  readonly frozen: string
}

const FROZEN = new Map<string, ParamValues>()

/** Registers a base's weights for LoRA networks built on it; returns their key (a content hash). */
export const registerFrozen = (params: ParamValues): string => {
  const hash = createHash("sha256")
  for (const name of Object.keys(params).sort()) {
    hash.update(name)
    hash.update(new Uint8Array(params[name].buffer, params[name].byteOffset, params[name].byteLength))
  }
  const key = hash.digest("hex").slice(0, 32)
  FROZEN.set(key, params)
  return key
}

export const frozenWeights = (key: string): ParamValues => {
  const params = FROZEN.get(key)
  if (params === undefined) throw new Error(`LoRA: the frozen base ${key} is not loaded (its base node has not run)`)
  return params
}

/** Names matching any of the comma-separated globs (`*` any run of characters). */
export const matchTargets = (names: ReadonlyArray<string>, patterns: string): Array<string> => {
  const globs = patterns.split(",").map((p) => p.trim()).filter((p) => p !== "")
  const res = globs.map((g) =>
    new RegExp(`^${g.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`)
  )
  return names.filter((n) => res.some((r) => r.test(n)))
}

const matrixOf = (spec: ParamSpec) => [spec.shape[0], spec.shape.slice(1).reduce((a, b) => a * b, 1)] as const

/** The adapters of `targets`: A [r, rest] and B [rows, r], the output side's one zero. */
const loraSpecs = (base: VelocityNet, rank: number, targets: ReadonlyArray<string>): Array<ParamSpec> =>
  targets.flatMap((name) => {
    const spec = base.specs.find((s) => s.name === name)
    const adapt = base.adaptable[name]
    if (spec === undefined || adapt === undefined) throw new Error(`LoRA: ${name} is not an adaptable weight`)
    const [rows, rest] = matrixOf(spec)
    // outAxis 0: rows are the outputs (B zero, A's fan-in `rest`); outAxis 1: the inputs (A zero, B's fan-in `rows`).
    const [a, b]: [ParamSpec["init"], ParamSpec["init"]] = adapt.outAxis === 0
      ? [{ std: 1 / Math.sqrt(3 * rest) }, "zeros"]
      : ["zeros", { std: 1 / Math.sqrt(3 * rows) }]
    return [
      { name: `${name}.lora_A`, shape: [rank, rest], init: a },
      { name: `${name}.lora_B`, shape: [rows, rank], init: b }
    ]
  })

/** W + (α/r)·B·A in the graph, shaped as W. */
export const adaptedWeight = (w: Tensor, a: Tensor, b: Tensor, scale: number): Tensor =>
  op.add(w, op.reshape(op.mul(op.matmul(b, a), scale), w.shape as ReadonlyArray<number>))

export const loraNet = <C>(cfg: C & LoraOptions & { readonly classes: number }, base: VelocityNet): VelocityNet<C> => {
  const specs = loraSpecs(base, cfg.rank, cfg.targets)
  const scale = cfg.alpha / cfg.rank
  // One set of frozen constants per graph (a guided forward calls the network twice).
  const constants = new WeakMap<Graph, Record<string, Tensor>>()
  const frozenIn = (g: Graph) => {
    const hit = constants.get(g)
    if (hit !== undefined) return hit
    const weights = frozenWeights(cfg.frozen)
    const made = Object.fromEntries(base.specs.map((s) => [s.name, g.constant(weights[s.name], s.shape)]))
    constants.set(g, made)
    return made
  }
  const forward: VelocityNet["forward"] = (g, p, x, t, c) => {
    const weights = { ...frozenIn(g) }
    for (const name of cfg.targets) {
      weights[name] = adaptedWeight(weights[name], p[`${name}.lora_A`], p[`${name}.lora_B`], scale)
    }
    return base.forward(g, weights, x, t, c)
  }
  return { specs, forward, guided: guidance(forward, cfg.classes), adaptable: {}, config: cfg }
}
