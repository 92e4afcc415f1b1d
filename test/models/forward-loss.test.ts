/**
 * The forward-process losses (DiffusionNFT, AWM; docs/algorithms.md §14) against values computed by hand
 * (JS, float64) from the network's outputs, taken from the inference session — a graph apart from the
 * loss's. Checked: NFT's implicit policies, adaptive weights, r mapping and scale; AWM's matching
 * log-likelihood ratio and each PPO-clip branch; the velocity-space KL.
 */
import { describe, expect, it } from "vitest"
import { Graph } from "../../engine/graph.ts"
import { initParams, paramInputs, type ParamValues } from "../../engine/params.ts"
import { EngineSession, type HostTensor } from "../../engine/session.ts"
import { forwardLoss, type ForwardLossConfig } from "../../models/forward-loss.ts"
import { velocityNet, type VelocityNetConfig } from "../../models/velocity-net.ts"
import { openStream } from "../../random/streams.ts"
import { forwardAt } from "../support/network.ts"

const net: VelocityNetConfig = { dim: 4, hidden: 8, blocks: 1, timeFeatures: 4, classes: 0 }
const specs = velocityNet(net).specs
const weights = (key: string) => initParams(specs.map((s) => ({ ...s, init: { std: 0.4 } })), openStream([key]))
const [theta, old, ref] = [weights("theta"), weights("old"), weights("reference")]
const M = 6
const d = net.dim
const t = 0.6
const rng = openStream(["forward-rows"])
const x0 = Float32Array.from({ length: M * d }, () => rng.normal())
const eps = Float32Array.from({ length: M * d }, () => rng.normal())
const xt = x0.map((v, i) => Math.fround((1 - t) * v + t * eps[i]))
// Advantages in every regime: beyond ±A_max (r clipped to 0 or 1), inside, zero.
const advs = [7, 2.5, 0.4, 0, -1.5, -6]
const advClip = 5

/** f(x, t) of a parameter set, from the inference session. */
const forward = (params: ParamValues) => forwardAt(net, params, xt, M, t)

const asInputs = (prefix: string, p: ParamValues) =>
  Object.fromEntries(specs.map((sp) => [`${prefix}.${sp.name}`, { data: p[sp.name], dims: sp.shape }]))

const evaluate = async (cfg: ForwardLossConfig) => {
  const g = new Graph("forward-loss-check")
  const out = forwardLoss(cfg)(g, paramInputs(g, specs, "p."))
  g.output("loss", out.loss)
  for (const [k, v] of Object.entries(out.metrics ?? {})) g.output(`metric.${k}`, v)
  for (const [k, v] of Object.entries(out.extra ?? {})) g.output(`extra.${k}`, v)
  const session = await EngineSession.create(g, { threads: 1, optimization: "basic" })
  const feeds: Record<string, HostTensor> = {
    xt: { data: xt, dims: [M, d] },
    x0: { data: x0, dims: [M, d] },
    target: { data: eps.map((e, i) => e - x0[i]), dims: [M, d] },
    t: { data: new Float32Array(M).fill(t), dims: [M] },
    p: { data: new Float32Array(M).fill(1), dims: [M] },
    q: { data: new Float32Array(M).fill(-t), dims: [M] },
    adv: { data: Float32Array.from(advs), dims: [M] },
    w: { data: new Float32Array(M).fill(1 / M), dims: [M] },
    ...asInputs("p", theta),
    ...asInputs("old", old),
    ...(cfg.beta > 0 ? asInputs("ref", ref) : {})
  }
  const res = await session.run(feeds)
  await session.release()
  return res
}

const scalar = (h: HostTensor) => Number(h.data[0])
// The graph computes in float32: 1e-5 relative is its rounding over a few hundred ops with room; a wrong
// weight, branch or factor (β, A_max, ½) is off by ≥ 1e-2.
const close = (value: number, expected: number) =>
  expect(Math.abs(value - expected)).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected)))

const base = { net, advClip, clipRange: 0.05 } as const

describe("the DiffusionNFT loss", () => {
  it("is A_max·(r L⁺ + (1 − r) L⁻)/β with adaptively weighted x0 errors of the implicit policies", async () => {
    const [f, fOld] = [await forward(theta), await forward(old)]
    for (const nftBeta of [1, 0.1]) {
      const expected = advs.reduce((sum, A, i) => {
        const lossOf = (mix: (e: number) => number) => {
          let [sq, ab] = [0, 0]
          for (let e = 0; e < d; e++) {
            const err = xt[i * d + e] - t * mix(i * d + e) - x0[i * d + e]
            sq += err * err
            ab += Math.abs(err)
          }
          return sq / d / Math.max(ab / d, 1e-5)
        }
        const pos = lossOf((k) => nftBeta * f[k] + (1 - nftBeta) * fOld[k])
        const neg = lossOf((k) => (1 + nftBeta) * fOld[k] - nftBeta * f[k])
        const r = Math.min(Math.max(A / (2 * advClip) + 0.5, 0), 1)
        return sum + (advClip * (r * pos + (1 - r) * neg)) / nftBeta / M
      }, 0)
      close(scalar((await evaluate({ ...base, kind: "nft", beta: 0, nftBeta })).loss), expected)
    }
  })
})

describe("the AWM loss", () => {
  it("clips the ratio of exp(−mean (f − (ε − x0))²) to the rollout weights' and adds β·mean (f − f_ref)²", async () => {
    const [f, fOld, fRef] = [await forward(theta), await forward(old), await forward(ref)]
    const beta = 0.3
    let [expected, kl] = [0, 0]
    const ratios: Array<number> = []
    advs.forEach((A, i) => {
      let [lp, lpOld, sq] = [0, 0, 0]
      for (let e = 0; e < d; e++) {
        const k = i * d + e
        const target = eps[k] - x0[k]
        lp -= (f[k] - target) ** 2 / d
        lpOld -= (fOld[k] - target) ** 2 / d
        sq += (f[k] - fRef[k]) ** 2 / d
      }
      const ratio = Math.exp(lp - lpOld)
      ratios.push(ratio)
      const clipped = Math.min(Math.max(ratio, 1 - base.clipRange), 1 + base.clipRange)
      expected += (Math.max(-A * ratio, -A * clipped) + beta * sq) / M
      kl += sq / M
    })
    // Weights this far apart put rows on both sides of the clip range: every branch is exercised.
    expect(ratios.some((r) => r > 1 + base.clipRange) && ratios.some((r) => r < 1 - base.clipRange)).toBe(true)
    const res = await evaluate({ ...base, kind: "awm", beta, nftBeta: 1 })
    close(scalar(res.loss), expected)
    close(scalar(res["metric.kl"]), kl)
    ratios.forEach((r, i) => close(Number((res["extra.ratio"].data as Float32Array)[i]), r))
  })
})
