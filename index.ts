/**
 * etaflow's public API — what a script imports from "etaflow". Everything not exported here is
 * internal and may change.
 *
 * - Building blocks: `Node.make` (a typed stage), `Port.of` (an input), `Persist` (where an output
 *   goes in the run folder), `Pipeline.define / extend / replace` (a typed DAG of stages),
 *   `Setting` (a pipeline's typed, validated settings).
 * - Running: `run(pipeline, { out?, set?, seed?, progress? })` → an Effect of the run's result;
 *   `Replay.fromRun(dir).from(stage).with(overrides)` re-runs a stored run from a stage.
 * - Services a node may read: `NodeContext` (pipeline, entry, iteration, seed, progress notes),
 *   `Rng` (seeded random streams), `RunStore` (the run folder).
 * - The registered pipelines (`pipelines`, and each by name), the nodes they are made of, the
 *   samplers (`samplers`: each `x_next ~ N(a·x + b·f_θ, s²I)`), and the rewards.
 * - Experiments: `Experiment.define({ name, doc, arms: [Experiment.arm(label, pipeline, settings)], seeds,
 *   claims })`, `runExperiment(def, { out?, seeds?, set? })` → an Effect of the experiment folder, with
 *   its comparison, findings and experiment.html; the built-in `experiments`.
 * - Failures are tagged errors (`UsageError`, `NodeFailure`, `NonFiniteError`, `StoreError`, and the
 *   domain errors of the nodes), so `Effect.catchTag` works on a run.
 */
export { NodeFailure, NonFiniteError, PipelineDefinitionError, StoreError, UsageError } from "./kernel/errors.ts"
export { Node, Persist, Port } from "./kernel/node.ts"
export type { Bound, Persistable } from "./kernel/node.ts"
export { Pipeline } from "./kernel/pipeline.ts"
export type { AnyPipeline, PipelineDef, RunnablePipeline } from "./kernel/pipeline.ts"
export { runPipeline as run } from "./kernel/run.ts"
export type { RunError, RunOptions, RunResult } from "./kernel/run.ts"
export { NodeContext, Rng, RunStore } from "./kernel/services.ts"
export type { RandomStream } from "./random/streams.ts"
export { Setting } from "./schemas/settings.ts"
export type { ConfigOf, Settings } from "./schemas/settings.ts"

export { experiments, findExperiment } from "./experiments/builtin.ts"
export { Experiment } from "./experiments/experiment.ts"
export type { Arm, Claim, ExperimentDef } from "./experiments/experiment.ts"
export { runExperiment } from "./experiments/run.ts"
export type { ExperimentOptions } from "./experiments/run.ts"
export { writeComparison } from "./experiments/write.ts"
export { adjointMatching } from "./pipelines/adjoint-matching.ts"
export { danceGrpo } from "./pipelines/dance-grpo.ts"
export { datasetPipeline } from "./pipelines/dataset.ts"
export { ddpo } from "./pipelines/ddpo.ts"
export { deterministicAm } from "./pipelines/deterministic-am.ts"
export { flowGrpo } from "./pipelines/flow-grpo.ts"
export { mixgrpo } from "./pipelines/mixgrpo.ts"
export { precisePipeline } from "./pipelines/precise.ts"
export { pretrain } from "./pipelines/pretrain.ts"
export { quickstart } from "./pipelines/quickstart.ts"
export { findPipeline, pipelines } from "./pipelines/registry.ts"
export { Replay } from "./pipelines/replay.ts"
export { rewardModel } from "./pipelines/reward-model.ts"
export { rlNodes, rlPipeline } from "./pipelines/rl-pipeline.ts"
export { samplerCheck } from "./pipelines/sampler-check.ts"
export { sdpo } from "./pipelines/sdpo.ts"
export { theoryGap } from "./pipelines/theory-gap.ts"

export { SAMPLER_NAMES, SamplerError, SAMPLERS } from "./diffusion/samplers.ts"
export type { Sampler, SamplerName, StepContext, Transition } from "./diffusion/samplers.ts"
export * as samplers from "./diffusion/samplers.ts"
export * as nodes from "./nodes/index.ts"
export * as rewards from "./rewards/rewards.ts"
