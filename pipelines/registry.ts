/** Every pipeline the CLI can run, by name. */
import type { RunnablePipeline } from "../kernel/pipeline.ts"
import { adjointMatching } from "./adjoint-matching.ts"
import { awm } from "./awm.ts"
import { danceGrpo } from "./dance-grpo.ts"
import { datasetPipeline } from "./dataset.ts"
import { ddpo } from "./ddpo.ts"
import { deterministicAm } from "./deterministic-am.ts"
import { diffusionNft } from "./diffusion-nft.ts"
import { flowGrpo } from "./flow-grpo.ts"
import { mixgrpo } from "./mixgrpo.ts"
import { precisePipeline } from "./precise.ts"
import { pretrain } from "./pretrain.ts"
import { quickstart } from "./quickstart.ts"
import { rewardModel } from "./reward-model.ts"
import { samplerCheck } from "./sampler-check.ts"
import { sdpo } from "./sdpo.ts"
import { theoryGap } from "./theory-gap.ts"

/** The registered pipelines: each needs no services beyond the kernel's and fails with tagged errors only. */
export const pipelines: ReadonlyArray<RunnablePipeline> = [
  quickstart,
  datasetPipeline,
  samplerCheck,
  theoryGap,
  pretrain,
  rewardModel,
  flowGrpo,
  danceGrpo,
  mixgrpo,
  precisePipeline,
  ddpo,
  sdpo,
  adjointMatching,
  deterministicAm,
  diffusionNft,
  awm
]

export const findPipeline = (name: string) => pipelines.find((p) => p.name === name)
