/**
 * `etaflow run diffusion-nft`: DiffusionNFT (Zheng et al., arXiv 2509.16117; NVlabs/DiffusionNFT
 * `train_nft_sd3.py`, `config/nft.py`; docs/algorithms.md §14.1) — ODE rollouts of the old policy, per-prompt
 * advantages mapped to r ∈ [0, 1], the implicit positive and negative policies' x0 losses on the samples
 * re-noised at the grid's times, KL 1e-4 to the base, and the old policy soft-updated after each iteration.
 */
import { Pipeline } from "../kernel/pipeline.ts"
import { forwardDefaults, forwardSettings, nftSettings } from "../nodes/rl/forward-config.ts"
import { forwardNodes, forwardPipeline } from "./forward-pipeline.ts"

export const diffusionNft = Pipeline.define({
  ...forwardPipeline({ name: "diffusion-nft", kind: "nft" }),
  doc: "DiffusionNFT: RL on the forward process, implicit positive/negative policies, any sampler (ODE default)",
  settings: {
    ...forwardSettings(forwardDefaults(1e-4)),
    ...nftSettings
  },
  nodes: forwardNodes("nft")
})
