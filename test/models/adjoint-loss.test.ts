import { describe, expect, it } from "vitest"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { initParams } from "../../engine/params.ts"
import { Trainer } from "../../engine/train.ts"
import { adjointMatchingLoss, interpolatedQuantile, LossClip, sampleTimeIndices } from "../../models/adjoint-loss.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import { velocityNet } from "../../models/velocity-net.ts"
import { openStream } from "../../random/streams.ts"

const net = { dim: 2, hidden: 8, blocks: 1, timeFeatures: 4, classes: 0 }
const draw = openStream(["am-loss-test"])
const params = Object.fromEntries(
  Object.entries(initParams(velocityNet(net).specs, draw)).map(([k, v]) => [k, v.map((w) => w + 0.3 * draw.normal())])
)
const R = 5
const rows = {
  x: Float32Array.from({ length: 2 * R }, () => draw.normal()),
  t: Float32Array.from({ length: R }, () => 0.1 + 0.8 * draw.uniform()),
  muBase: Float32Array.from({ length: 2 * R }, () => draw.normal()),
  adjoint: Float32Array.from({ length: 2 * R }, () => draw.normal()),
  a: Float32Array.from({ length: R }, () => 1 - 0.1 * draw.uniform()),
  b: Float32Array.from({ length: R }, () => -0.1 - 0.1 * draw.uniform()),
  s: Float32Array.from({ length: R }, () => 0.05 + 0.2 * draw.uniform())
}

const feeds = (threshold: number) => ({
  x: { data: rows.x, dims: [R, 2] },
  t: { data: rows.t, dims: [R] },
  mu_base: { data: rows.muBase, dims: [R, 2] },
  adjoint: { data: rows.adjoint, dims: [R, 2] },
  a: { data: rows.a, dims: [R] },
  b: { data: rows.b, dims: [R] },
  s: { data: rows.s, dims: [R] },
  w: { data: new Float32Array(R).fill(1 / R), dims: [R] },
  threshold: { data: Float32Array.of(threshold), dims: [] }
})

/** ℓ per row from the network's outputs by a separate inference session, in float64. */
const handLosses = async () => {
  const policy = await networkPolicy({
    net,
    params,
    process: rectifiedFlow,
    parameterization: "velocity",
    shape: [2],
    cfg: 1,
    threads: 1
  })
  const out: Array<number> = []
  for (let r = 0; r < R; r++) {
    const f = await policy.predict(rows.x.subarray(2 * r, 2 * r + 2), 1, rows.t[r])
    let l = 0
    for (let i = 0; i < 2; i++) {
      const mu = rows.a[r] * rows.x[2 * r + i] + rows.b[r] * f[i]
      l += ((mu - rows.muBase[2 * r + i]) / rows.s[r] + rows.adjoint[2 * r + i] * rows.s[r]) ** 2
    }
    out.push(l)
  }
  await policy.release()
  return out
}

const trainer = () =>
  Trainer.create({
    name: "am-test",
    specs: velocityNet(net).specs,
    loss: adjointMatchingLoss(net),
    threads: 1,
    init: params
  })

describe("the adjoint-matching loss", () => {
  it("is Σ w ‖(μ_ft − μ_base)/s + a·s‖² over the rows, computed by hand from the network's outputs", async () => {
    const expected = await handLosses()
    const t = await trainer()
    const r = await t.step(feeds(3.4e38), 0)
    const rowLoss = r.extra.row_loss.data as Float32Array
    // float32 graph against a float64 sum: 1e-4 relative covers rounding of terms up to ~1e2.
    expected.forEach((l, i) => expect(Math.abs(rowLoss[i] - l)).toBeLessThan(1e-4 * Math.max(1, l)))
    const mean = expected.reduce((x, y) => x + y, 0) / R
    expect(Math.abs(r.loss - mean)).toBeLessThan(1e-4 * mean)
    await t.release()
  })

  it("drops the rows whose √ℓ exceeds the clipping threshold", async () => {
    const expected = await handLosses()
    const roots = expected.map(Math.sqrt).sort((x, y) => x - y)
    const threshold = (roots[2] + roots[3]) / 2
    const t = await trainer()
    const r = await t.step(feeds(threshold), 0)
    const kept = expected.filter((l) => Math.sqrt(l) < threshold).reduce((x, y) => x + y, 0) / R
    expect(Math.abs(r.loss - kept)).toBeLessThan(1e-4 * Math.max(1, kept))
    await t.release()
  })

  it("lowers itself under AdamW: the gradient points toward the target drift", async () => {
    const t = await trainer()
    const first = (await t.step(feeds(3.4e38), 1e-2)).loss
    let last = first
    for (let i = 0; i < 40; i++) last = (await t.step(feeds(3.4e38), 1e-2)).loss
    expect(last).toBeLessThan(0.5 * first)
    await t.release()
  })
})

describe("time indices and loss clipping", () => {
  it("take 2 steps from the first 60 % and 2 from the rest, distinct and sorted", () => {
    for (let seed = 0; seed < 20; seed++) {
      const k = sampleTimeIndices(10, openStream(["times", seed]))
      expect(k.length).toBe(4)
      expect(k.filter((i) => i < 6).length).toBe(2)
      expect(new Set(k).size).toBe(4)
      expect([...k].sort((x, y) => x - y)).toEqual(k)
      expect(k.every((i) => i >= 0 && i < 10)).toBe(true)
    }
    // Three steps: round(1.8) = 2 early steps, one late step.
    expect(sampleTimeIndices(3, openStream(["times", "short"]))).toEqual([0, 1, 2])
  })

  it("take the 90th percentile of √ℓ interpolated between order statistics, as torch.quantile does", () => {
    // √ℓ = 1..10: position 0.9 · 9 = 8.1 lies between the 9th and 10th values, 9 + 0.1 · (10 − 9).
    expect(interpolatedQuantile(Array.from({ length: 10 }, (_, i) => i + 1), 0.9)).toBeCloseTo(9.1, 12)
    expect(interpolatedQuantile([4, 1, 3, 2], 0.5)).toBeCloseTo(2.5, 12)
    expect(interpolatedQuantile([7], 0.9)).toBe(7)
  })

  it("track the reference's EMA of the quantile over many batches, and keep rows strictly below it", () => {
    // Batches whose √ℓ all equal v have quantile v. The sequence 10, 20, 5, 5, …: by hand, 10,
    // then ½·20 + ½·10 = 15 (only the second update averages: 1 < 1/0.9), then 0.9·EMA + 0.1·5 eight
    // times: 14, 13.1, 12.29, 11.561, 10.9049, 10.31441, 9.782969, 9.3046721.
    const clip = new LossClip()
    expect(clip.threshold).toBe(Number.POSITIVE_INFINITY)
    for (const v of [10, 20, 5, 5, 5, 5, 5, 5, 5, 5]) clip.observe(new Array(8).fill(v * v))
    expect(clip.threshold).toBeCloseTo(9.3046721, 9)
    expect(clip.keeps(9.3 ** 2)).toBe(true)
    expect(clip.keeps(clip.threshold ** 2)).toBe(false)
    // am_trainer.py's EMA_update, typed from the reference, on 14 batches of varied losses.
    const reference = { updates: 0, value: -1, decay: 0.9 }
    const emaUpdate = (value: number) => {
      if (reference.updates === 0) reference.value = value
      else if (reference.updates < 1 / reference.decay) {
        reference.value = value / (reference.updates + 1) + (1 - 1 / (reference.updates + 1)) * reference.value
      } else reference.value = reference.decay * reference.value + (1 - reference.decay) * value
      reference.updates += 1
      return reference.value
    }
    const stream = openStream(["ema", "batches"])
    const ours = new LossClip()
    for (let b = 0; b < 14; b++) {
      const losses = Array.from({ length: 12 }, () => (1 + 9 * stream.uniform()) ** 2)
      const roots = losses.map(Math.sqrt).sort((x, y) => x - y)
      // torch.quantile(…, 0.9) of 12 values: position 9.9, between the 10th and 11th.
      const expected = emaUpdate(roots[9] + 0.9 * (roots[10] - roots[9]))
      ours.observe(losses)
      expect(ours.threshold).toBeCloseTo(expected, 12)
    }
  })
})
