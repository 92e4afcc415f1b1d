/**
 * The nodes the registered pipelines are made of, for composing new pipelines in a script
 * (`import { nodes } from "etaflow"`). Node name = entry name = the stage `replay --from` takes.
 */
export { baseSamples } from "./eval/base-samples.ts"
export { evalSamples, evalTable, evaluation } from "./eval/evaluation.ts"
export { groupAdvantages, promptTrackerAdvantages, stepPromptTrackerAdvantages } from "./rl/advantages.ts"
export { grpoSettings, rlSettings, trackerSettings, vpSettings } from "./rl/config.ts"
export type { RlConfig, RlVariant } from "./rl/config.ts"
export { denseRewards } from "./rl/dense-rewards.ts"
export { rewards } from "./rl/rewards.ts"
export { rollout } from "./rl/rollout.ts"
export { rlTrajectoryTable, sdpoTrajectoryTable, trajectories } from "./rl/trajectory-table.ts"
export { pairedUpdate, policyUpdate } from "./rl/update.ts"
export { baseModel, PretrainSettings, rlBaseModel } from "./setup/base-model.ts"
export { dataset, DATASETS, trainingData } from "./setup/dataset.ts"
export { modelOnnx, modelWeights } from "./setup/model-files.ts"
export { prompts } from "./setup/prompts.ts"
export { defaultClassifier, defaultJudge, rewardClassifier, RewardModelSettings } from "./setup/reward-classifier.ts"
export { gapPoints } from "./studies/gap-points.ts"
export { gapTable } from "./studies/gap-table.ts"
export { samplerRuns } from "./studies/sampler-runs.ts"
export { markdownTable, samplerTable } from "./studies/sampler-table.ts"
export { tableOf } from "./studies/samples-table.ts"
