/**
 * Adjoint matching's prompt dropout (am_trainer.py `evaluate_controls`): a dropped batch trains the
 * unconditional branch. Seen where it cannot be mistaken: the class embedding of a conditional network,
 * whose rows only get a gradient from the classes a batch feeds. AdamW from zero moments leaves a row
 * with no gradient exactly as it was, so after one step exactly the rows of the fed classes have moved.
 */
import { describe, expect, it } from "vitest"
import { uniformGrid } from "../../diffusion/grids.ts"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { flowGrpo } from "../../diffusion/samplers.ts"
import { initParams } from "../../engine/params.ts"
import { gaussianData } from "../../models/analytic.ts"
import { velocityNet } from "../../models/velocity-net.ts"
import { openStream } from "../../random/streams.ts"
import type { AmUpdateRequest } from "../../training/adjoint-rows.ts"
import { adjointMatchingUpdate } from "../../training/adjoint-update.ts"

const net = { dim: 1, hidden: 8, blocks: 1, timeFeatures: 4, classes: 2 }
const chains = 16
const steps = 4
const base = gaussianData({ mean: 1, std: 0.5, dim: 1, process: rectifiedFlow, parameterization: "velocity" })

const update = async (
  promptDropout: number,
  lossClip = false,
  lossClipOrder: "previous" | "reference" = "reference"
) => {
  const r = await rollout({
    policy: base,
    sampler: flowGrpo,
    noise: Math.SQRT2,
    grid: uniformGrid(steps),
    chains,
    record: true,
    initStream: (j) => openStream(["dropout", "init", j]),
    stepStream: (j) => openStream(["dropout", "step", j])
  })
  const noise = openStream(["dropout", "adjoints"])
  const adjoints = {
    from: 0,
    chains,
    values: Array.from({ length: steps + 1 }, () => Float32Array.from({ length: chains }, () => noise.normal()))
  }
  const outputs = async (k: number) =>
    base.predict(r.latents!.subarray(k * chains, (k + 1) * chains), chains, r.steps[k].t)
  let unconditionalCalls = 0
  // Every weight random (the network's own init zeroes its output layer, which would leave the embedding
  // without a gradient on the first step).
  const specs = velocityNet(net).specs.map((sp) => ({ ...sp, init: { std: 0.4 } }))
  const params = initParams(specs, openStream(["dropout", "params"]))
  const request: AmUpdateRequest = {
    net,
    residual: false,
    deterministic: false,
    targetAdjoint: "next",
    costWeight: "constant",
    lr: 1e-2,
    batchSize: chains,
    innerEpochs: 1,
    threads: 1,
    lossClip,
    lossClipOrder,
    gradClip: 0,
    warmupSteps: 0,
    weightDecay: 0,
    promptDropout
  }
  const initial = params["class.embedding"].slice()
  const zeros = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, new Float32Array(v.length)]))
  const out = await adjointMatchingUpdate({
    rollout: r,
    adjoints,
    process: rectifiedFlow,
    // Prompts of classes 0 and 1 only; class 2 is the null condition.
    condition: Int32Array.from({ length: chains }, (_, j) => j % 2),
    baseOutput: outputs,
    unconditional: {
      condition: new Int32Array(chains).fill(net.classes),
      baseOutput: (k) => {
        unconditionalCalls++
        return outputs(k)
      }
    },
    request,
    init: { params, m: zeros, v: { ...zeros }, step: 0 },
    stream: openStream(["dropout", "update"])
  })
  const H = net.hidden
  const moved = [0, 1, 2].map((c) => {
    const before = initial.subarray(c * H, (c + 1) * H)
    const after = out.state.params["class.embedding"].subarray(c * H, (c + 1) * H)
    return after.some((v, i) => v !== before[i])
  })
  return { moved, unconditionalCalls, dropped: out.metrics.prompt_dropped_fraction, metrics: out.metrics }
}

describe("prompt dropout in adjoint matching", () => {
  it("trains the prompts' class rows and not the null condition's when no batch drops", async () => {
    const kept = await update(0)
    expect(kept.moved).toEqual([true, true, false])
    expect(kept.unconditionalCalls).toBe(0)
    expect(kept.dropped).toBe(0)
  })

  it("trains only the null condition's row, against the base's unconditional means, when the batch drops", async () => {
    const dropped = await update(1)
    expect(dropped.moved).toEqual([false, false, true])
    expect(dropped.unconditionalCalls).toBeGreaterThan(0)
    expect(dropped.dropped).toBe(1)
  })
})

describe("the loss clip inside the update", () => {
  it("masks the first batch at its own interpolated 90th percentile, as the reference's order does", async () => {
    const { metrics } = await update(0, true)
    const n = metrics.trained_rows
    // One batch of n distinct row losses: the quantile lies strictly between the sorted values at
    // ⌊0.9 (n − 1)⌋ and the next, so exactly the rows above that index are at or over it (64 rows: 7).
    expect(n).toBe(64)
    expect(metrics.masked_fraction).toBe((n - 1 - Math.floor(0.9 * (n - 1))) / n)
  })

  it("masks nothing of the first batch in etaflow's default order (the EMA of earlier batches: none yet)", async () => {
    const { metrics } = await update(0, true, "previous")
    expect(metrics.masked_fraction).toBe(0)
  })
})
