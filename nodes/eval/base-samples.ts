/**
 * baseSamples: ODE samples of the pretrained model (Euler steps for flows, DDIM η = 0 on the
 * trailing grid for VP), with the quality numbers a data set allows: for MNIST the fraction the
 * reward classifier assigns to the conditioned digit, the judge's accuracy, the Fréchet distance to
 * the real test digits and the within-class diversity; for the double ring its outer mass and
 * radial error. The samples are a DatasetTable (label = the condition), MNIST as pixels.
 */
import type * as arrow from "apache-arrow"
import { type Context, Effect } from "effect"
import { latentToPixels } from "../../data/mnist.ts"
import { trailingGrid, uniformGrid } from "../../diffusion/grids.ts"
import type { Policy } from "../../diffusion/policy.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { SamplerError } from "../../diffusion/samplers.ts"
import { ode } from "../../diffusion/samplers.ts"
import { GraphError } from "../../engine/graph.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import { DatasetTable } from "../../schemas/dataset.ts"
import { accuracy } from "../../training/classifier.ts"
import { REWARD_ERRORS } from "../rl/rewards.ts"
import type { BaseModel } from "../setup/base-model.ts"
import type { RewardClassifier } from "../setup/reward-classifier.ts"
import { ringStats } from "../studies/sampler-table.ts"
import { qualityOf, type QualityReference, qualityReference, releaseQuality } from "./quality.ts"

type RngService = Context.Service.Shape<typeof Rng>

export interface SampleRequest {
  readonly dataset: string
  readonly evalSamples: number
  readonly evalSteps: ReadonlyArray<number>
  readonly cfg: number
  readonly threads: number
}

/** Class accuracy of the samples and their quality beside it (§11.3): FD, class FD, diversity, judge. */
const mnistMetrics = async (
  samples: { readonly pixels: Float32Array; readonly condition: Int32Array; readonly steps: number },
  base: BaseModel,
  models: { readonly classifier: RewardClassifier; readonly quality: QualityReference }
) => {
  const { pixels, condition, steps } = samples
  const n = condition.length
  const acc = await accuracy(
    models.classifier.session,
    { x: pixels, label: condition, count: n, side: base.shape[0] },
    base.net.dim,
    base.net.classes
  )
  const q = await qualityOf(models.quality, pixels, condition, n)
  return {
    [`sample_class_accuracy.s${steps}`]: acc,
    [`sample_judge_accuracy.s${steps}`]: q.judge,
    [`sample_fd.s${steps}`]: q.fd,
    [`sample_fd_class.s${steps}`]: q.fdClass,
    [`sample_diversity.s${steps}`]: q.diversity
  }
}

/** ODE samples at one step count, from the same initial noise whatever the count. */
const sampleAt = async (
  policy: Policy,
  base: BaseModel,
  steps: number,
  n: number,
  condition: Int32Array | undefined,
  rng: RngService
) => {
  // Trailing DDIM timesteps: evaluation starts at the top of the schedule (§1.1).
  const grid = base.process.kind === "rf" ? uniformGrid(steps) : trailingGrid(steps)
  const r = await rollout({
    policy,
    sampler: ode,
    noise: 0,
    grid,
    chains: n,
    condition,
    initStream: (j) => rng.stream("init", j),
    stepStream: (j) => rng.stream("step", j)
  })
  return r.final
}

export const baseSamples = Node.make({
  name: "samples",
  doc: "ODE samples of the pretrained model at each of evalSteps and their quality (accuracy, FD, judge, ring mass)",
  inputs: {
    base: Port.of<BaseModel>(),
    classifier: Port.of<RewardClassifier | undefined>(),
    judge: Port.of<RewardClassifier | undefined>(),
    data: Port.of<arrow.Table>(),
    config: Port.of<SampleRequest>()
  },
  run: ({ base, classifier, judge, data, config }) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const n = config.evalSamples
      const classes = base.net.classes
      const condition = classes > 0 ? Int32Array.from({ length: n }, (_, i) => i % classes) : undefined
      const mnist = config.dataset === "mnist"
      return yield* Node.promise([...REWARD_ERRORS, SamplerError, GraphError], async () => {
        const policy = await networkPolicy({ ...base, cfg: config.cfg, threads: config.threads })
        const quality = mnist && classifier !== undefined && judge !== undefined
          ? await qualityReference(data, classifier, judge, config.threads)
          : undefined
        const metrics: Record<string, number> = {}
        let x: Float32Array = new Float32Array(0)
        for (const steps of config.evalSteps) {
          const final = await sampleAt(policy, base, steps, n, condition, rng)
          x = mnist ? final.map(latentToPixels) : final
          if (quality !== undefined && condition !== undefined) {
            Object.assign(
              metrics,
              await mnistMetrics({ pixels: x, condition, steps }, base, { classifier: classifier!, quality })
            )
          }
          if (config.dataset === "double-ring") {
            const ring = ringStats(final, n)
            metrics[`outer_mass.s${steps}`] = ring.outerMass
            metrics[`radial_error.s${steps}`] = ring.radialError
          }
        }
        await policy.release()
        if (quality !== undefined) await releaseQuality(quality)
        // The table holds the samples of the last step count listed.
        const table = DatasetTable.build(n, {
          index: Int32Array.from({ length: n }, (_, i) => i),
          split: new Array<string>(n).fill("sample"),
          label: condition ?? null,
          x
        }, { x: base.shape })
        return { table, metrics }
      })
    }),
  metrics: (out) => out.metrics
})
