/**
 * Every velocity / ε network a pipeline can train, by config: etaflow's MLP (no `arch`, the configs
 * and cache keys of earlier runs), its U-Net and DiT, an imported ONNX policy, and LoRA adapters on
 * any of them.
 */
import { type DiTConfig, ditNet } from "./dit.ts"
import { loraNet, type LoraOptions } from "./lora.ts"
import { mlpNet, type MlpNetConfig, type VelocityNet } from "./networks.ts"
import { onnxNet, type OnnxNetConfig } from "./onnx-net.ts"
import { type UNetConfig, unetNet } from "./unet.ts"

export interface LoraNetConfig extends LoraOptions {
  readonly arch: "lora"
  readonly base: VelocityNetConfig
  readonly dim: number
  readonly classes: number
}

export type VelocityNetConfig = MlpNetConfig | UNetConfig | DiTConfig | OnnxNetConfig | LoraNetConfig

export const velocityNet = (cfg: VelocityNetConfig): VelocityNet<VelocityNetConfig> => {
  if (!("arch" in cfg)) return mlpNet(cfg)
  switch (cfg.arch) {
    case "unet":
      return unetNet(cfg)
    case "dit":
      return ditNet(cfg)
    case "onnx":
      return onnxNet(cfg)
    case "lora":
      return loraNet(cfg, velocityNet(cfg.base))
  }
}

/** The network under any LoRA adapters (what an export merges into). */
export const baseNetOf = (cfg: VelocityNetConfig): VelocityNetConfig =>
  "arch" in cfg && cfg.arch === "lora" ? baseNetOf(cfg.base) : cfg

/** A short description for names and reports: mlp(512x3), onnx(tiny-unet.onnx), lora(r4)+… */
export const describeNet = (cfg: VelocityNetConfig): string => {
  if (!("arch" in cfg)) return `velocity-mlp(${cfg.hidden}x${cfg.blocks})`
  if (cfg.arch === "lora") {
    return `lora(r${cfg.rank}, α ${cfg.alpha}, ${cfg.targets.length} weights)+${describeNet(cfg.base)}`
  }
  if (cfg.arch === "unet") return `unet(${cfg.channels} channels)`
  if (cfg.arch === "dit") return `dit(${cfg.depth}×${cfg.width}, patch ${cfg.patch})`
  return `onnx(${cfg.file.split("/").at(-1)})`
}
