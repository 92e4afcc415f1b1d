/**
 * The policy a pipeline fine-tunes (docs/byom.md): etaflow's own pretrained base, or an imported ONNX
 * network (`base=file.onnx` with its model.json), fully or through LoRA adapters (`lora=r`). The
 * settings every RL and adjoint pipeline shares, their checks before a run starts, and the base
 * model they give.
 */
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import { rectifiedFlow, vpDiscrete } from "../../diffusion/process.ts"
import { initParams } from "../../engine/params.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { cacheRoot, weightsFile } from "../../models/cache.ts"
import { ModelContractError } from "../../models/external.ts"
import { matchTargets, registerFrozen } from "../../models/lora.ts"
import { loadPolicyContract } from "../../models/model-contract.ts"
import { onnxBytes, onnxParams } from "../../models/onnx-net.ts"
import { type LoraNetConfig, velocityNet, type VelocityNetConfig } from "../../models/velocity-net.ts"
import type { RandomStream } from "../../random/streams.ts"
import { Setting } from "../../schemas/settings.ts"
import {
  type Arch,
  ARCHS,
  type BaseModel,
  cachedBaseParams,
  pretrainedBase,
  rlBaseNet,
  rlBaseRequest
} from "./base-model.ts"
import type { DatasetName } from "./dataset.ts"

export const modelSettings = {
  base: Setting.string(
    "default",
    "the network fine-tuned: default (etaflow's pretrained base of `arch`) or an .onnx file with its contract " +
      "X.json / model.json beside it (docs/byom.md)"
  ),
  arch: Setting.literal(ARCHS, "mlp", "etaflow's base network: the MLP, or (MNIST) its U-Net or DiT"),
  lora: Setting.int(0, "LoRA rank of the adapters trained instead of the weights (0: train every weight)", { min: 0 }),
  loraAlpha: Setting.number(0, "LoRA α, the update scaled by α/r (0: 2·rank, flow_grpo's r 32 / α 64)", { min: 0 }),
  loraTargets: Setting.string(
    "*",
    "comma-separated globs of the weights adapted (matrix-product and convolution weights; e.g. *.conv*,*attn*)"
  )
}

export interface ModelConfig {
  readonly base: string
  readonly arch: Arch
  readonly lora: number
  readonly loraAlpha: number
  readonly loraTargets: string
}

/** The base an imported file gives (its contract was checked before the run started). */
export const importedBase = (file: string): BaseModel => {
  const loaded = loadPolicyContract(file)
  if (Array.isArray(loaded)) throw new ModelContractError({ file, message: loaded.join("\n") })
  const { net, contract } = loaded
  const params = onnxParams(net)
  const specs = velocityNet(net).specs
  return {
    net,
    params,
    process: contract.process === "rf" ? rectifiedFlow : vpDiscrete(contract.schedule ?? "scaled-linear"),
    parameterization: contract.parameterization,
    shape: contract.latentShape,
    onnx: onnxBytes(net),
    weights: weightsFile(params, specs, { kind: "imported-base", source: net.file }),
    loss: Number.NaN,
    cached: true
  }
}

/**
 * The policy network of a stored run (export): the base its config names, under its LoRA adapters with the
 * frozen base registered — the imported file, or etaflow's base from the model cache.
 */
export const storedPolicyNet = (
  config: ModelConfig & { readonly dataset: DatasetName; readonly threads: number },
  process: "rf" | "vp",
  seed: number
): VelocityNetConfig => {
  const loaded = config.base === "default" ? undefined : loadPolicyContract(config.base)
  if (Array.isArray(loaded)) throw new ModelContractError({ file: config.base, message: loaded.join("\n") })
  const base = loaded?.net ?? rlBaseNet(config.dataset, config.arch)
  if ((config.lora ?? 0) === 0) return base
  const params = loaded !== undefined
    ? onnxParams(loaded.net)
    : cachedBaseParams(rlBaseRequest(config.dataset, process, config.threads, config.arch), base, seed)
  if (params === undefined) {
    throw new ModelContractError({
      file: "model cache",
      message: `the run's base (${config.dataset}, ${process}, seed ${seed}) is not in the model cache ` +
        `(${cacheRoot()}); its LoRA adapters need it: run the pipeline once to pretrain it`
    })
  }
  return loraConfigOf(base, config, registerFrozen(params))
}

/** The LoRA network on a base: its adapted weights by pattern, the base's weights frozen. */
export const loraConfigOf = (base: VelocityNetConfig, c: ModelConfig, frozen: string): LoraNetConfig => {
  const targets = matchTargets(Object.keys(velocityNet(base).adaptable), c.loraTargets)
  return {
    arch: "lora",
    base,
    rank: c.lora,
    alpha: c.loraAlpha === 0 ? 2 * c.lora : c.loraAlpha,
    targets,
    frozen,
    dim: base.dim,
    classes: base.classes
  }
}

/** The policy's starting point: the base, or LoRA adapters on it (the adapted network equals the base). */
export const withLora = (base: BaseModel, c: ModelConfig, rng: RandomStream): BaseModel => {
  if (c.lora === 0) return base
  const net = loraConfigOf(base.net, c, registerFrozen(base.params))
  return { ...base, net, params: initParams(velocityNet(net).specs, rng) }
}

/**
 * What keeps the model settings from running, before any folder exists: an imported file's problems,
 * a process or latent size the pipeline cannot use, LoRA patterns that adapt nothing.
 */
export const modelProblems = (
  c: ModelConfig & { readonly dataset: string; readonly cfg: number },
  process: "rf" | "vp" | undefined,
  defaultNet: VelocityNetConfig
): Array<string> => {
  let net = defaultNet
  if (c.arch !== "mlp" && c.dataset !== "mnist") {
    return [`setting "arch": ${c.arch} is a 28×28 image network; dataset is ${c.dataset}`]
  }
  if (c.base !== "default") {
    const loaded = loadPolicyContract(c.base)
    if (Array.isArray(loaded)) return loaded.map((p) => `setting "base": ${p}`)
    const { contract } = loaded
    net = loaded.net
    const problems: Array<string> = []
    if (process !== undefined && contract.process !== process) {
      problems.push(`setting "base": ${c.base} is a ${contract.process} model; this pipeline trains ${process}`)
    }
    if (net.dim !== defaultNet.dim) {
      problems.push(
        `setting "base": ${c.base} has latents of ${net.dim} values ([${contract.latentShape}]); ` +
          `the ${c.dataset} rewards read ${defaultNet.dim}`
      )
    }
    if (c.cfg !== 1 && net.classes === 0) {
      problems.push(`setting "cfg": ${c.base} is unconditional; guidance needs classes`)
    }
    if (problems.length > 0) return problems
  }
  if (c.lora > 0 && loraConfigOf(net, c, "").targets.length === 0) {
    return [
      `setting "loraTargets": "${c.loraTargets}" matches none of the adaptable weights (${
        Object.keys(velocityNet(net).adaptable).slice(0, 8).join(", ")
      }, …)`
    ]
  }
  return []
}

/**
 * base (every RL and adjoint pipeline's stage): the network the policy starts from — etaflow's pretrained
 * base of the algorithm's process (or, `"setting"`, the config's `process`, §14) or the imported file — with
 * LoRA adapters when `lora` > 0.
 */
export const rlBaseModel = (process: "rf" | "vp" | "setting") =>
  Node.make({
    name: "base",
    doc: "the network the policy starts from: the pretrained base (cached) or an imported ONNX file, LoRA on request",
    inputs: {
      data: Port.of<arrow.Table>(),
      config: Port.of<
        ModelConfig & {
          readonly dataset: DatasetName
          readonly threads: number
          readonly process?: "rf" | "vp" | undefined
        }
      >()
    },
    run: ({ data, config }) =>
      Effect.gen(function*() {
        const rng = yield* Rng
        const base = config.base === "default"
          ? yield* pretrainedBase(
            data,
            rlBaseRequest(
              config.dataset,
              process === "setting" ? config.process ?? "rf" : process,
              config.threads,
              config.arch
            )
          )
          : yield* Node.promise([ModelContractError], async () => importedBase(config.base))
        return withLora(base, config, rng.stream("lora"))
      }),
    exclusive: true,
    // An imported base was trained elsewhere: it has no loss to report.
    metrics: (m): Record<string, number> => (Number.isNaN(m.loss) ? {} : { loss: m.loss })
  })
