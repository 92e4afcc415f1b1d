import { describe, expect, it } from "vitest"
import { uniformGrid } from "../../diffusion/grids.ts"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { flowGrpo, ode } from "../../diffusion/samplers.ts"
import { initParams } from "../../engine/params.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import { velocityNet } from "../../models/velocity-net.ts"
import { openStream } from "../../random/streams.ts"

describe("rollouts of a network policy (MNIST-sized MLP)", async () => {
  const net = { dim: 784, hidden: 512, blocks: 3, timeFeatures: 64, classes: 10 }
  const params = initParams(velocityNet(net).specs.map((s) => ({ ...s, init: { std: 0.05 } })), openStream(["np"]))
  const policy = await networkPolicy({
    net,
    params,
    process: rectifiedFlow,
    parameterization: "velocity",
    shape: [28, 28],
    cfg: 1,
    threads: 2
  })
  const spec = (n: number, sampler = flowGrpo, noise = 0.7) => ({
    policy,
    sampler,
    noise,
    grid: uniformGrid(4),
    chains: n,
    condition: Int32Array.from({ length: n }, (_, i) => i % 10),
    initStream: (j: number) => openStream(["init", j]),
    stepStream: (j: number) => openStream(["step", j])
  })

  it("give the first chain the same bits whether 1 chain or 80 are sampled", async () => {
    const [one, many] = [await rollout(spec(1)), await rollout(spec(80))]
    expect(Buffer.from(many.final.buffer, 0, 784 * 4).equals(Buffer.from(one.final.buffer))).toBe(true)
  })

  it("with noise level 0 reproduce the ODE rollout bit for bit", async () => {
    const [sde0, odeRun] = [await rollout(spec(8, flowGrpo, 0)), await rollout(spec(8, ode, 0))]
    expect(Buffer.from(sde0.final.buffer).equals(Buffer.from(odeRun.final.buffer))).toBe(true)
  })
})
