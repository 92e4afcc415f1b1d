/**
 * The nodes the registered pipelines are made of, for composing new pipelines in a script
 * (`import { nodes } from "etaflow"`). Node name = entry name = the stage `replay --from` takes.
 */
export { groupAdvantages, promptTrackerAdvantages, stepPromptTrackerAdvantages } from "./advantages.ts"
export { baseModel, PretrainSettings, rlBaseModel } from "./base-model.ts"
export { baseSamples } from "./base-samples.ts"
export { dataset, DATASETS, trainingData } from "./dataset.ts"
export { denseRewards } from "./dense-reward.ts"
export { evalSamples, evalTable, evaluation } from "./evaluate.ts"
export { gapPoints } from "./gap-points.ts"
export { gapTable } from "./gap-table.ts"
export { modelOnnx, modelWeights } from "./model-files.ts"
export { prompts } from "./prompts.ts"
export { defaultClassifier, defaultJudge, rewardClassifier, RewardModelSettings } from "./reward-classifier.ts"
export { grpoSettings, rlSettings, trackerSettings, vpSettings } from "./rl-config.ts"
export type { RlConfig, RlVariant } from "./rl-config.ts"
export { rollout } from "./rollout.ts"
export { samplerRuns } from "./sampler-rollouts.ts"
export { markdownTable, samplerTable } from "./sampler-table.ts"
export { rewards } from "./score.ts"
export { tableOf } from "./table-of.ts"
export { rlTrajectoryTable, sdpoTrajectoryTable, trajectories } from "./trajectories.ts"
export { pairedUpdate, policyUpdate } from "./update.ts"
