/**
 * The policy losses against values computed by hand (JS, float64) from the network's output. The
 * network forward comes from the inference session (models/network-policy.ts), a separate graph
 * from the loss's; the loss's own arithmetic — log-prob, ratio, each clip branch, the two KL forms,
 * Precise's per-step normalisation, SDPO's clamp — is what is checked.
 */
import { describe, expect, it } from "vitest"
import { Graph } from "../../engine/graph.ts"
import { initParams, paramInputs, type ParamValues } from "../../engine/params.ts"
import { EngineSession, type HostTensor } from "../../engine/session.ts"
import type { LossBuilder } from "../../engine/train-step.ts"
import { type PolicyLossConfig, ppoLoss, sdpoLoss } from "../../models/policy-loss.ts"
import { velocityNet, type VelocityNetConfig } from "../../models/velocity-net.ts"
import { openStream } from "../../random/streams.ts"
import { forwardAt } from "../support/network.ts"

const net: VelocityNetConfig = { dim: 4, hidden: 8, blocks: 1, timeFeatures: 4, classes: 0 }
const specs = velocityNet(net).specs
const weights = (key: string) => initParams(specs.map((s) => ({ ...s, init: { std: 0.4 } })), openStream([key]))
const theta = weights("theta")
const M = 6
const d = net.dim
const rng = openStream(["rows"])
const x = Float32Array.from({ length: M * d }, () => rng.normal())
const xNext = Float32Array.from({ length: M * d }, () => rng.normal())
const t = 0.6
const [a, b, s] = [0.9, -0.3, 0.25]

/** f(x, t) of a parameter set, from the inference session. */
const forward = (params: ParamValues) => forwardAt(net, params, x, M, t)

/** μ, lp (Gaussian, mean over elements) and the squared residual of row i, in float64. */
const byHand = (f: Float32Array, i: number, bRow = b, sRow = s) => {
  let sq = 0
  const mu: Array<number> = []
  for (let e = 0; e < d; e++) {
    mu.push(a * x[i * d + e] + bRow * f[i * d + e])
    sq += (xNext[i * d + e] - mu[e]) ** 2
  }
  sq /= d
  return { mu, sq, lp: -sq / (2 * sRow * sRow) - Math.log(sRow) - 0.5 * Math.log(2 * Math.PI) }
}

/** Runs a loss graph once (no optimizer step) and returns its loss, metrics and extras. */
const evaluate = async (
  loss: LossBuilder,
  feeds: Record<string, HostTensor>,
  extra: Record<string, HostTensor> = {}
) => {
  const g = new Graph("loss-check")
  const out = loss(g, paramInputs(g, specs, "p."))
  g.output("loss", out.loss)
  for (const [k, v] of Object.entries(out.metrics ?? {})) g.output(`metric.${k}`, v)
  for (const [k, v] of Object.entries(out.extra ?? {})) g.output(`extra.${k}`, v)
  const session = await EngineSession.create(g, { threads: 1, optimization: "basic" })
  const res = await session.run({
    ...feeds,
    ...extra,
    ...Object.fromEntries(specs.map((sp) => [`p.${sp.name}`, { data: theta[sp.name], dims: sp.shape }]))
  })
  await session.release()
  return res
}

const rowFeeds = (
  lpOld: ArrayLike<number>,
  adv: ArrayLike<number>,
  bs: ArrayLike<number> = new Array(M).fill(b),
  ss: ArrayLike<number> = new Array(M).fill(s)
) => ({
  x: { data: x, dims: [M, d] },
  x_next: { data: xNext, dims: [M, d] },
  t: { data: new Float32Array(M).fill(t), dims: [M] },
  a: { data: new Float64Array(M).fill(a), dims: [M] },
  b: { data: Float64Array.from(bs), dims: [M] },
  s: { data: Float64Array.from(ss), dims: [M] },
  lp_old: { data: Float64Array.from(lpOld), dims: [M] },
  adv: { data: Float32Array.from(adv), dims: [M] },
  w: { data: new Float32Array(M).fill(1 / M), dims: [M] }
})

const scalar = (h: HostTensor) => Number(h.data[0])
// The ratio and the loss are float32 in the graph: 1e-6 relative is float32 rounding with room; a
// wrong branch or a wrong factor of 2 is off by ≥ 1e-3 here.
const close = (value: number, expected: number) =>
  expect(Math.abs(value - expected)).toBeLessThan(1e-6 * Math.max(1, Math.abs(expected)))

describe("the PPO-clip loss", () => {
  const eps = 0.1
  // log-ratios δ and advantages that put the six rows in every branch of max(−A r, −A clip(r)):
  // inside the range; r > 1 + ε with A > 0 (clipped) and A < 0 (not); r < 1 − ε with A > 0 (not)
  // and A < 0 (clipped); r = 1.
  const deltas = [0.05, 0.3, 0.3, -0.3, -0.3, 0]
  const advs = [1.5, 2, -2, 2, -2, -1]
  const config: PolicyLossConfig = { net, cfg: 1, clipRange: eps, beta: 0 }

  it("takes the clipped or unclipped term per row as the clip branches say, and weights rows by w", async () => {
    const f = await forward(theta)
    const lp = Array.from({ length: M }, (_, i) => byHand(f, i).lp)
    const res = await evaluate(ppoLoss(config), rowFeeds(lp.map((v, i) => v - deltas[i]), advs))
    const expected = deltas.reduce((sum, delta, i) => {
      const r = Math.exp(delta)
      const clipped = Math.min(Math.max(r, 1 - eps), 1 + eps)
      return sum + Math.max(-advs[i] * r, -advs[i] * clipped) / M
    }, 0)
    close(scalar(res.loss), expected)
    const ratio = res["extra.ratio"].data as Float32Array
    deltas.forEach((delta, i) => close(ratio[i], Math.exp(delta)))
  })

  it("adds β·KL in the paper's form (per element, 1/(2s²)) or flow_grpo's code form (× Δ)", async () => {
    const ref = weights("reference")
    const [f, fRef] = [await forward(theta), await forward(ref)]
    const lp = Array.from({ length: M }, (_, i) => byHand(f, i).lp)
    const paper = Array.from({ length: M }, (_, i) => {
      let sq = 0
      for (let e = 0; e < d; e++) sq += (b * (f[i * d + e] - fRef[i * d + e])) ** 2
      return sq / d / (2 * s * s)
    })
    const beta = 0.5
    const refFeeds = Object.fromEntries(specs.map((sp) => [`ref.${sp.name}`, { data: ref[sp.name], dims: sp.shape }]))
    for (const scale of [1, 0.1]) {
      const res = await evaluate(ppoLoss({ ...config, beta }), rowFeeds(lp, new Array(M).fill(0)), {
        ...refFeeds,
        kl_scale: { data: new Float32Array(M).fill(scale), dims: [M] }
      })
      const kl = paper.reduce((sum, v) => sum + (scale * v) / M, 0)
      close(scalar(res["metric.kl"]), kl)
      // Advantages 0: the PPO term vanishes and the loss is β·KL.
      close(scalar(res.loss), beta * kl)
    }
  })

  it(
    "normalises Precise's ratio per step: log r = (Δlp + mean (μ − μ_old)²/(2s²))·s, each row ÷ |b| of its step",
    async () => {
      const f = await forward(theta)
      // Two steps with their own b and s: a batch-mean σ̄ (0.325) or |b| in place of each row's is off by ≥ 10 %.
      const bs = [-0.3, -0.3, -0.3, -0.1, -0.1, -0.1]
      const ss = [0.25, 0.25, 0.25, 0.4, 0.4, 0.4]
      const rows = Array.from({ length: M }, (_, i) => byHand(f, i, bs[i], ss[i]))
      const muOld = new Float32Array(M * d)
      rows.forEach((r, i) => r.mu.forEach((m, e) => (muOld[i * d + e] = m + 0.01 * (e - 1.5))))
      const lpOld = rows.map((r) => r.lp - 0.02)
      const res = await evaluate(ppoLoss({ ...config, rationorm: true }), rowFeeds(lpOld, advs, bs, ss), {
        mu_old: { data: muOld, dims: [M, d] }
      })
      const expected = rows.reduce((sum, r, i) => {
        let shift = 0
        for (let e = 0; e < d; e++) shift += (r.mu[e] - muOld[i * d + e]) ** 2
        const ratio = Math.exp((r.lp - lpOld[i] + shift / d / (2 * ss[i] * ss[i])) * ss[i])
        const clipped = Math.min(Math.max(ratio, 1 - eps), 1 + eps)
        return sum + Math.max(-advs[i] * ratio, -advs[i] * clipped) / Math.abs(bs[i]) / M
      }, 0)
      close(scalar(res.loss), expected)
    }
  )

  it("uses FlowCPS's unnormalised log-prob −mean (x' − μ)² when the sampler stores it", async () => {
    const f = await forward(theta)
    const lp = Array.from({ length: M }, (_, i) => -byHand(f, i).sq)
    const res = await evaluate(
      ppoLoss({ ...config, logProb: "unnormalized" }),
      rowFeeds(new Array(M).fill(0), new Array(M).fill(1))
    )
    const got = res["extra.lp"].data as Float64Array
    lp.forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThan(1e-12))
  })
})

describe("the SDPO loss", () => {
  it("is mean over pairs of max((w·dl − dA)², (w·dl_c − dA)²) with lp clamped to lp_old ± ε", async () => {
    const eps = 0.05
    const f = await forward(theta)
    const lp = Array.from({ length: M }, (_, i) => byHand(f, i).lp)
    // Pairs (0,1), (2,3), (4,5): log-prob moves inside and outside the clamp, advantages apart.
    const moves = [0.01, -0.02, 0.2, -0.1, -0.3, 0.04]
    const advs = [1, -1, 0.5, 0.2, -2, 1]
    const lambdaK = [0.99, 0.99, 0.98, 0.98, 0.97, 0.97]
    const feeds = rowFeeds(lp.map((v, i) => v - moves[i]), advs)
    feeds.w = { data: Float32Array.from(lambdaK), dims: [M] }
    const res = await evaluate(sdpoLoss({ net, cfg: 1, clipRange: eps }), feeds)
    const clamp = (v: number) => Math.min(Math.max(v, -eps), eps)
    let expected = 0
    for (let p = 0; p < M / 2; p++) {
      const [i, j] = [2 * p, 2 * p + 1]
      const dA = advs[i] - advs[j]
      const unclipped = (lambdaK[i] * (moves[i] - moves[j]) - dA) ** 2
      const clipped = (lambdaK[i] * (clamp(moves[i]) - clamp(moves[j])) - dA) ** 2
      expected += Math.max(unclipped, clipped) / (M / 2)
    }
    close(scalar(res.loss), expected)
  })
})
