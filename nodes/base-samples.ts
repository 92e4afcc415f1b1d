/**
 * baseSamples: ODE samples of the pretrained model (20 Euler steps for flows, DDIM η = 0 on the
 * leading grid for VP), with the quality numbers a data set allows: for MNIST the fraction the
 * reward classifier assigns to the conditioned digit; for the double ring its outer mass and
 * radial error. The samples are a DatasetTable (label = the condition), MNIST as pixels.
 */
import { Effect } from "effect"
import { latentToPixels } from "../data/mnist.ts"
import { trailingGrid, uniformGrid } from "../diffusion/grids.ts"
import { rollout } from "../diffusion/rollout.ts"
import { SamplerError } from "../diffusion/samplers.ts"
import { ode } from "../diffusion/samplers.ts"
import { GraphError } from "../engine/graph.ts"
import { Node, Port } from "../kernel/node.ts"
import { Rng } from "../kernel/services.ts"
import { networkPolicy } from "../models/network-policy.ts"
import { accuracy } from "../models/train-classifier.ts"
import { DatasetTable } from "../schemas/dataset.ts"
import type { BaseModel } from "./base-model.ts"
import type { RewardClassifier } from "./reward-classifier.ts"
import { ringStats } from "./sampler-table.ts"
import { REWARD_ERRORS } from "./score.ts"

export interface SampleRequest {
  readonly dataset: string
  readonly evalSamples: number
  readonly evalSteps: number
  readonly cfg: number
  readonly threads: number
}

export const baseSamples = Node.make({
  name: "samples",
  doc: "ODE samples of the pretrained model and their quality (class accuracy, ring mass)",
  inputs: {
    base: Port.of<BaseModel>(),
    classifier: Port.of<RewardClassifier | undefined>(),
    config: Port.of<SampleRequest>()
  },
  run: ({ base, classifier, config }) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const n = config.evalSamples
      const classes = base.net.classes
      const condition = classes > 0 ? Int32Array.from({ length: n }, (_, i) => i % classes) : undefined
      // Trailing DDIM timesteps: evaluation starts at the top of the schedule (§1.1).
      const grid = base.process.kind === "rf" ? uniformGrid(config.evalSteps) : trailingGrid(config.evalSteps)
      return yield* Node.promise([...REWARD_ERRORS, SamplerError, GraphError], async () => {
        const policy = await networkPolicy({ ...base, cfg: config.cfg, threads: config.threads })
        const r = await rollout({
          policy,
          sampler: ode,
          noise: 0,
          grid,
          chains: n,
          ...(condition ? { condition } : {}),
          initStream: (j) => rng.stream("init", j),
          stepStream: (j) => rng.stream("step", j)
        })
        await policy.session.release()
        const mnist = config.dataset === "mnist"
        const x = mnist ? r.final.map(latentToPixels) : r.final
        const metrics: Record<string, number> = {}
        if (mnist && classifier !== undefined && condition !== undefined) {
          metrics.sample_class_accuracy = await accuracy(
            classifier.session,
            { x, label: condition, count: n, side: base.shape[0] },
            base.net.dim,
            classes
          )
        }
        if (config.dataset === "double-ring") {
          const s = ringStats(r.final, n)
          metrics.outer_mass = s.outerMass
          metrics.radial_error = s.radialError
        }
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
