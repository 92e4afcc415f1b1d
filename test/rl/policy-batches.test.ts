/**
 * An update's row feeds: each minibatch's latents are the stored transitions' (checked against the
 * rollout's arrays by hand-indexing), also when a minibatch reuses the previous one's buffers.
 */
import { describe, expect, it } from "@effect/vitest"
import { uniformGrid } from "../../diffusion/grids.ts"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { samplerOf } from "../../diffusion/samplers.ts"
import { initParams } from "../../engine/params.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import { velocityNet, type VelocityNetConfig } from "../../models/velocity-net.ts"
import type { Trajectories } from "../../nodes/rl/rollout.ts"
import { openStream } from "../../random/streams.ts"
import { type Row, rowFeeds, type RowScratch, storedLogProbs, storedMeans } from "../../training/policy-batches.ts"

const net: VelocityNetConfig = { dim: 16, hidden: 32, blocks: 1, timeFeatures: 8, classes: 0 }
const chains = 6

const trajectories = async (): Promise<Trajectories> => {
  const params = initParams(velocityNet(net).specs.map((s) => ({ ...s, init: { std: 0.3 } })), openStream(["rows"]))
  const policy = await networkPolicy({
    net,
    params,
    process: rectifiedFlow,
    parameterization: "velocity",
    shape: [4, 4],
    cfg: 1,
    threads: 1
  })
  const r = await rollout({
    policy,
    sampler: samplerOf("flow-grpo"),
    noise: 0.7,
    grid: uniformGrid(5),
    chains,
    record: true,
    initStream: (j) => openStream(["init", j]),
    stepStream: (j) => openStream(["step", j])
  })
  await policy.release()
  const ints = (f: (j: number) => number) => Int32Array.from({ length: chains }, (_, j) => f(j))
  return {
    rollout: r,
    prompts: {
      prompt: new Array(chains).fill(null),
      promptId: ints(() => 0),
      condition: ints(() => -1),
      groupId: ints((j) => j),
      member: ints(() => 0),
      groups: chains,
      groupSize: 1
    },
    steps: r.steps,
    process: rectifiedFlow,
    trainable: r.steps.map((s) => s.step)
  }
}

describe("an update's row feeds", () => {
  it("hold each row's stored x_k and x_{k+1}, also in buffers reused from the previous minibatch", async () => {
    const tr = await trajectories()
    const d = net.dim
    const n = chains * d
    const tables = { lpOld: storedLogProbs(tr), muOld: storedMeans(tr), klScale: undefined }
    const values = { adv: (j: number, k: number) => j - k, weight: () => 1 }
    const scratch: RowScratch = new Map()
    const first: Array<Row> = [[0, 0], [1, 2], [5, 4]]
    const second: Array<Row> = [[3, 1], [2, 3], [4, 0]]
    const a = rowFeeds(tr, first, values, tables, false, scratch)
    const b = rowFeeds(tr, second, values, tables, false, scratch)
    const floats = (t: { readonly data: unknown }) => Array.from(t.data as Float32Array)
    // The second minibatch wrote into the first one's buffers (the first's feeds were done with).
    expect(b.x.data).toBe(a.x.data)
    const latents = tr.rollout.latents!
    second.forEach(([j, k], q) => {
      expect(floats(b.x).slice(q * d, (q + 1) * d)).toEqual(
        Array.from(latents.subarray(k * n + j * d, k * n + (j + 1) * d))
      )
      expect(floats(b.x_next).slice(q * d, (q + 1) * d)).toEqual(
        Array.from(latents.subarray((k + 1) * n + j * d, (k + 1) * n + (j + 1) * d))
      )
    })
    // Reused or fresh, the same feeds.
    const fresh = rowFeeds(tr, second, values, tables, false)
    expect(fresh.x.data).not.toBe(b.x.data)
    for (const name of ["x", "x_next", "mu_old", "lp_old", "adv", "a", "b", "s", "t"]) {
      expect(floats(b[name])).toEqual(floats(fresh[name]))
    }
    // A minibatch of another size gets buffers of its size.
    expect(rowFeeds(tr, first.slice(1), values, tables, false, scratch).x.data.length).toBe(2 * d)
  })
})
