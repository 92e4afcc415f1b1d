/** Every pipeline the CLI can run, by name. */
import type { AnyPipeline, PipelineRequirements } from "../kernel/pipeline.ts"
import { datasetPipeline } from "./dataset.ts"
import { quickstart } from "./quickstart.ts"
import { samplerCheck } from "./sampler-check.ts"
import { theoryGap } from "./theory-gap.ts"
import { pretrain } from "./pretrain.ts"
import { rewardModel } from "./reward-model.ts"
import { flowGrpo } from "./flow-grpo.ts"
import { danceGrpo } from "./dance-grpo.ts"
import { mixgrpo } from "./mixgrpo.ts"
import { precisePipeline } from "./precise.ts"
import { ddpo } from "./ddpo.ts"
import { sdpo } from "./sdpo.ts"

/** A pipeline the CLI can run: it needs no services beyond those the kernel provides. */
const runnable = <P extends AnyPipeline>(p: P & ([PipelineRequirements<P>] extends [never] ? unknown : { needsServices: PipelineRequirements<P> })) =>
  p as unknown as AnyPipeline

export const pipelines = [runnable(quickstart), runnable(datasetPipeline), runnable(samplerCheck), runnable(theoryGap), runnable(pretrain), runnable(rewardModel), runnable(flowGrpo), runnable(danceGrpo), runnable(mixgrpo), runnable(precisePipeline), runnable(ddpo), runnable(sdpo)]

export const findPipeline = (name: string) => pipelines.find((p) => p.name === name)
