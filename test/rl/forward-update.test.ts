/**
 * The forward-process updates (DiffusionNFT, AWM; docs/algorithms.md §14) read the rollout's samples and
 * nothing of how they were drawn: the same samples give the same update bit for bit whether an ODE or an
 * SDE rollout produced them, and different samples a different one.
 */
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import { describe, expect, it } from "vitest"
import { uniformGrid } from "../../diffusion/grids.ts"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { type Rollout, rollout } from "../../diffusion/rollout.ts"
import { flowGrpo, ode } from "../../diffusion/samplers.ts"
import { initParams } from "../../engine/params.ts"
import { runPipeline } from "../../kernel/run.ts"
import type { ForwardKind } from "../../models/forward-loss.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import { velocityNet, type VelocityNetConfig } from "../../models/velocity-net.ts"
import { forwardBatchOf, forwardRequestOf } from "../../nodes/rl/forward-update.ts"
import type { Trajectories } from "../../nodes/rl/rollout.ts"
import { awm } from "../../pipelines/awm.ts"
import { diffusionNft } from "../../pipelines/diffusion-nft.ts"
import { openStream } from "../../random/streams.ts"
import { nftOldDecay, runForwardUpdates } from "../../training/forward-update.ts"
import { tempRun } from "../support/runs.ts"

const net: VelocityNetConfig = { dim: 2, hidden: 16, blocks: 1, timeFeatures: 8, classes: 0 }
const params = initParams(velocityNet(net).specs, openStream(["forward-base"]))
const base = { net, params, process: rectifiedFlow, parameterization: "velocity", shape: [2] } as const
const chains = 16
const grid = uniformGrid(6)
const advantages = Float64Array.from({ length: chains }, (_, j) => Math.sin(j) * 2)

const sampleWith = async (stochastic: boolean): Promise<Rollout> => {
  const policy = await networkPolicy({ ...base, cfg: 1, threads: 1 })
  const r = await rollout({
    policy,
    sampler: stochastic ? flowGrpo : ode,
    noise: stochastic ? 0.7 : 0,
    grid,
    chains,
    initStream: (j) => openStream(["init", j]),
    stepStream: (j) => openStream(["step", j]),
    record: true
  })
  await policy.release()
  return r
}

const trajectoriesOf = (r: Rollout): Trajectories => ({
  rollout: r,
  prompts: {
    prompt: new Array(chains).fill(null),
    promptId: new Int32Array(chains),
    condition: new Int32Array(chains).fill(-1),
    groupId: new Int32Array(chains),
    member: Int32Array.from({ length: chains }, (_, j) => j),
    groups: 1,
    groupSize: chains
  },
  steps: r.steps,
  process: rectifiedFlow,
  trainable: []
})

const update = (kind: ForwardKind, r: Rollout) =>
  runForwardUpdates(
    forwardBatchOf(trajectoriesOf(r), base),
    advantages,
    null,
    base,
    forwardRequestOf(kind, {
      lr: 1e-2,
      weightDecay: 0,
      innerEpochs: 1,
      batchSize: 8,
      threads: 1,
      beta: 1e-4,
      clipRange: 1e-3,
      timestepFraction: 0.99
    }),
    openStream(["update"])
  )

describe.each(["nft", "awm"] as const)("the %s update", (kind) => {
  it("is the same bit for bit from ODE or SDE rollouts of the same samples, and moves with the samples", async () => {
    const [odeR, sdeR] = [await sampleWith(false), await sampleWith(true)]
    expect(sdeR.latents!.some((v, i) => v !== odeR.latents![i])).toBe(true)
    const fromOde = await update(kind, odeR)
    const fromSde = await update(kind, { ...sdeR, final: odeR.final })
    const fromOtherSamples = await update(kind, sdeR)
    for (const [name, w] of Object.entries(fromOde.trained.params)) {
      expect(Buffer.from(fromSde.trained.params[name].buffer).equals(Buffer.from(w.buffer)), name).toBe(true)
    }
    expect(fromOtherSamples.trained.params["out.w"].some((v, i) => v !== fromOde.trained.params["out.w"][i])).toBe(
      true
    )
    expect(fromOde.metrics.optimizer_steps).toBe(2)
    // 16 samples × ⌊6 · 0.99⌋ = 5 trained times each.
    expect(fromOde.metrics.trained_rows).toBe(80)
  })
})

describe("DiffusionNFT's old policy", () => {
  it("moves toward the weights by 1 − min(0.001·steps, 0.5) after an update (NVlabs decay_type 1)", async () => {
    const u = await update("nft", await sampleWith(false))
    const d = nftOldDecay(u.trained.step)
    expect(d).toBe(0.002)
    const [b, w, o] = [params["in.w"], u.trained.params["in.w"], u.old!["in.w"]]
    for (let i = 0; i < b.length; i++) expect(o[i]).toBeCloseTo(d * b[i] + (1 - d) * w[i], 6)
  })
})

describe("the forward-process pipelines' settings", () => {
  it("refuse guidance they would not train and a clip range DiffusionNFT lacks, before any folder", async () => {
    for (
      const [pipeline, set, message] of [
        [awm, { cfg: "2" }, /setting "cfg": awm trains CFG-free/],
        [diffusionNft, { clipRange: "0.1" }, /clipRange/]
      ] as const
    ) {
      const out = tempRun("forward-refused")
      const exit = await Effect.runPromiseExit(runPipeline(pipeline, { out, progress: "none", set }))
      expect(Exit.isFailure(exit) && String(exit.cause)).toMatch(message)
      expect(fs.existsSync(out)).toBe(false)
    }
  })
})
