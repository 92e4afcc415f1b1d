/**
 * The on-policy invariant, tested where it can fail: for every sampler, the log-prob the rollout
 * stores (JS, float64, diffusion/logprob.ts) equals the one the policy loss computes from the same
 * stored transition (ONNX graph, float32, models/policy-loss.ts) — two independent implementations.
 * The update uses the stored value as lp_old, so any disagreement biases every ratio.
 */
import { describe, expect, it } from "vitest"
import { trailingGrid, uniformGrid } from "../../diffusion/grids.ts"
import { type Process, rectifiedFlow, vpDiscrete } from "../../diffusion/process.ts"
import { type Rollout, rollout } from "../../diffusion/rollout.ts"
import { SAMPLER_NAMES, samplerLogProb, type SamplerName, samplerOf, SAMPLERS } from "../../diffusion/samplers.ts"
import type { LogProbConvention } from "../../diffusion/samplers.ts"
import { Graph } from "../../engine/graph.ts"
import { initParams, paramInputs } from "../../engine/params.ts"
import { EngineSession } from "../../engine/session.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import { logProbGraph, type PolicyLossConfig } from "../../models/policy-loss.ts"
import { velocityNet, type VelocityNetConfig } from "../../models/velocity-net.ts"
import { openStream } from "../../random/streams.ts"

const net: VelocityNetConfig = { dim: 16, hidden: 32, blocks: 1, timeFeatures: 8, classes: 3 }
const params = initParams(velocityNet(net).specs.map((s) => ({ ...s, init: { std: 0.3 } })), openStream(["stored-lp"]))
const chains = 12
const condition = Int32Array.from({ length: chains }, (_, j) => j % 3)

const cases = SAMPLER_NAMES.filter((name) => name !== "ode").flatMap((name) => {
  const rf = { name, process: rectifiedFlow, parameterization: "velocity" as const, grid: uniformGrid(6) }
  const vp = { name, process: vpDiscrete("scaled-linear"), parameterization: "epsilon" as const, grid: trailingGrid(6) }
  return (SAMPLERS[name].processes as ReadonlyArray<string>).includes("vp") ? [rf, vp] : [rf]
})

const sample = async (
  name: SamplerName,
  process: Process,
  parameterization: "velocity" | "epsilon",
  grid: Array<number>
) => {
  const policy = await networkPolicy({ net, params, process, parameterization, shape: [4, 4], cfg: 1.5, threads: 1 })
  const r = await rollout({
    policy,
    sampler: samplerOf(name),
    noise: SAMPLERS[name].reference,
    grid,
    chains,
    condition,
    record: true,
    initStream: (j) => openStream(["init", j]),
    stepStream: (j) => openStream(["step", j])
  })
  await policy.release()
  return r
}

/** The loss graph's log-prob of every stochastic transition of a rollout (cfg 1.5, as sampled). */
const graphLogProbs = async (r: Rollout, process: Process, convention: LogProbConvention) => {
  const lossConfig: PolicyLossConfig = { net, cfg: 1.5, clipRange: 0.2, beta: 0, logProb: convention }
  const g = new Graph("stored-lp")
  logProbGraph(g, lossConfig, paramInputs(g, velocityNet(net).specs, "p."))
  const session = await EngineSession.create(g, { threads: 1 })
  const d = net.dim
  const out: Array<{ stored: number; graph: number }> = []
  for (const step of r.steps.filter((s) => s.s > 0)) {
    const k = step.step
    const M = chains
    const scalar = (v: number) => ({ data: new Float32Array(M).fill(v), dims: [M] })
    const double = (v: number) => ({ data: new Float64Array(M).fill(v), dims: [M] })
    const res = await session.run({
      x: { data: r.latents!.slice(k * M * d, (k + 1) * M * d), dims: [M, d] },
      x_next: { data: r.latents!.slice((k + 1) * M * d, (k + 2) * M * d), dims: [M, d] },
      t: scalar(process.modelTime(step.t)),
      c: { data: BigInt64Array.from(condition, BigInt), dims: [M] },
      a: double(step.a),
      b: double(step.b),
      s: double(step.s),
      lp_old: double(0),
      adv: scalar(0),
      w: scalar(1 / M),
      ...Object.fromEntries(
        velocityNet(net).specs.map((sp) => [`p.${sp.name}`, { data: params[sp.name], dims: sp.shape }])
      )
    })
    const lp = res.lp.data as Float64Array
    for (let j = 0; j < M; j++) out.push({ stored: r.logProb[k * M + j], graph: lp[j] })
  }
  await session.release()
  return out
}

const maxDeviation = (pairs: ReadonlyArray<{ stored: number; graph: number }>) =>
  pairs.reduce((m, p) => Math.max(m, Math.abs(p.stored - p.graph)), 0)

describe("the log-prob a sampler stores", () => {
  it.each(cases.map((c) => [c.name, c.process.name, c] as const))(
    "%s on %s equals the loss graph's log-prob of the same transition within 1e-5",
    async (name, _process, c) => {
      const r = await sample(name, c.process, c.parameterization, c.grid)
      const pairs = await graphLogProbs(r, c.process, samplerLogProb(name))
      expect(pairs.length).toBeGreaterThan(0)
      // Both compute lp in float64 from the same float32 latents and network output (the network's
      // own float32 forward is the same kernel sequence in both sessions): what is left is float64
      // rounding; a wrong coefficient or convention is off by far more than 1e-5.
      expect(maxDeviation(pairs)).toBeLessThan(1e-5)
    }
  )

  it("catches a loss that scores CPS transitions with the Gaussian log-prob instead of FlowCPS's", async () => {
    const r = await sample("cps", rectifiedFlow, "velocity", uniformGrid(6))
    expect(maxDeviation(await graphLogProbs(r, rectifiedFlow, "gaussian"))).toBeGreaterThan(1e-2)
  })
})
