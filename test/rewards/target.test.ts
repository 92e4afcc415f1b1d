/** The tilt task's reward log p(T | x): its parsing, its value, its gradient and its target (§13). */
import * as ortWeb from "onnxruntime-web"
import { describe, expect, it } from "vitest"
import { loadMnist, MNIST_SHAPE } from "../../data/mnist.ts"
import { initParams } from "../../engine/params.ts"
import { classifierNet } from "../../models/networks.ts"
import { goldMetrics, tiltedReward, tiltReference } from "../../nodes/eval/tilt.ts"
import { openStream } from "../../random/streams.ts"
import { classifierGradient } from "../../rewards/gradients.ts"
import type { RewardContext } from "../../rewards/rewards.ts"
import { logTargetProb, targetDigits, targetReward } from "../../rewards/target.ts"
import { DatasetTable } from "../../schemas/dataset.ts"
import { classifierSession } from "../../training/classifier.ts"

const net = { dim: 784, hidden: 32, layers: 2, classes: 10 }
const params = initParams(classifierNet(net).specs, openStream(["target-test"]))

describe("the target digits", () => {
  it("are read from one digit, a list, even or odd, and a bad target names itself", () => {
    expect(targetDigits("7")).toEqual([7])
    expect(targetDigits(" 3, 0 ,3")).toEqual([0, 3])
    expect(targetDigits("even")).toEqual([0, 2, 4, 6, 8])
    expect(targetDigits("odd")).toEqual([1, 3, 5, 7, 9])
    expect(() => targetDigits("seven")).toThrow(/target "seven" should be digits 0–9/)
    expect(() => targetDigits("12")).toThrow(/target "12"/)
    expect(() => targetDigits("0,1,2,3,4,5,6,7,8,9")).toThrow(/names every digit/)
  })
})

describe("log p(T | x)", () => {
  it("is log Σ_{c∈T} p(c | x), and stays finite where every p(c | x) underflows", () => {
    const logp = Float64Array.of(-1, -2, -0.5, -3, -4, -5, -6, -7, -8, -9)
    expect(logTargetProb(logp, 0, 10, [1, 3])).toBeCloseTo(Math.log(Math.exp(-2) + Math.exp(-3)), 14)
    const far = Float64Array.of(-1000, -1001, 0, 0, 0, 0, 0, 0, 0, 0)
    // Naively log(e^−1000 + e^−1001) = log 0; the shifted sum keeps −1000 + log(1 + e^−1).
    expect(logTargetProb(far, 0, 10, [0, 1])).toBeCloseTo(-1000 + Math.log1p(Math.exp(-1)), 9)
  })

  it("has the gradient the adjoint uses: central finite differences of the reward itself", async () => {
    const { bytes, session } = await classifierSession(net, params, 1)
    const target = [2, 7]
    const count = 4
    const rng = openStream(["target-test", "x"])
    // Inside (−1, 1): the pixel map does not clip, so the reward is smooth in every coordinate.
    const latents = Float32Array.from({ length: count * 784 }, () => 1.8 * rng.uniform() - 0.9)
    const ctx = (samples: Float32Array): RewardContext => ({
      dataset: "mnist",
      samples,
      count,
      dim: 784,
      condition: new Int32Array(count).fill(10)
    })
    const gradient = await (await classifierGradient(bytes, 784, 10, 1, target)).gradient(ctx(latents))
    const reward = targetReward(session, 10, target)
    // float32 forwards at h = 1e-2: 2 % or 1e-4, as for the classifier reward's gradient.
    for (const k of [5, 300, 784 * 2 + 450, 784 * 3 + 100]) {
      const shifted = (h: number) => ctx(Float32Array.from(latents, (v, i) => (i === k ? v + h : v)))
      const row = Math.floor(k / 784)
      const fd = ((await reward.score(shifted(1e-2)))[row] - (await reward.score(shifted(-1e-2)))[row]) / 2e-2
      expect(Math.abs(fd - gradient[k])).toBeLessThan(Math.max(1e-4, 0.02 * Math.abs(fd)))
    }
    await session.release()
  })
})

describe("the tilt target's reward", () => {
  it("is the mean log p(T | x) of the real test digits of T, as a second runtime computes it", async () => {
    const m = loadMnist(0.2)
    const data = DatasetTable.build(m.count, {
      index: Int32Array.from({ length: m.count }, (_, i) => i),
      split: m.split,
      label: m.label,
      x: m.x
    }, { x: MNIST_SHAPE })
    const { bytes, session } = await classifierSession(net, params, 1)
    const target = [0, 3]
    const ref = await tiltReference(data, { net, params, session }, { session }, target, 1)
    // Independently: the test digits labelled 0 or 3 picked here, the ONNX classifier run by onnxruntime-web,
    // log(p_0 + p_3) summed naively in float64 (no underflow: a random small net's log-probs are ≈ −2.3).
    const rows = Array.from(m.label).flatMap((l, i) => (m.split[i] === "test" && target.includes(l) ? [i] : []))
    const pixels = new Float32Array(rows.length * 784)
    rows.forEach((r, j) => pixels.set(m.x.subarray(r * 784, (r + 1) * 784), j * 784))
    ortWeb.env.wasm.numThreads = 1
    const web = await ortWeb.InferenceSession.create(bytes)
    const logp = (await web.run({ x: new ortWeb.Tensor("float32", pixels, [rows.length, 784]) })).logp
      .data as Float32Array
    let sum = 0
    for (let i = 0; i < rows.length; i++) sum += Math.log(Math.exp(logp[i * 10]) + Math.exp(logp[i * 10 + 3]))
    expect(ref.targetReward.count).toBe(rows.length)
    // Two float32 runtimes differ by a few ulps per log-prob; the mean of ~400 agrees far inside 1e-5.
    expect(Math.abs(ref.targetReward.mean - sum / rows.length)).toBeLessThan(1e-5)
    await ref.features.release()
    await session.release()
  })
})

describe("the reward of p_base·exp(λ r) by importance weights", () => {
  it("is μ + λσ² when r is N(μ, σ²) under the base, with (Σw)²/Σw² ≈ n·exp(−λ²σ²) effective samples", () => {
    // The exponential tilt of a normal is the normal shifted by λσ² (a closed form the estimate must meet).
    const rng = openStream(["tilted-test"])
    const n = 200_000
    const [mu, sigma, lambda] = [-3, 0.8, 1.5]
    const r = Float64Array.from({ length: n }, () => mu + sigma * rng.normal())
    const { mean, ess } = tiltedReward(r, lambda)
    // ESS ≈ 46,000: the estimate's s.e. ≈ σ/√ESS ≈ 0.004; 0.02 is 5 of them.
    expect(Math.abs(mean - (mu + lambda * sigma * sigma))).toBeLessThan(0.02)
    expect(ess / (n * Math.exp(-(lambda * lambda) * sigma * sigma))).toBeCloseTo(1, 1)
  })
})

describe("the gold reward beside a proxy's", () => {
  it("is the judge's log p(T | x) on tilt, log p(prompted digit | x) otherwise, paired against the base", async () => {
    // A planted judge (a random small classifier) and two sample sets; every number recomputed here with
    // onnxruntime-web and naive sums.
    const judgeParams = initParams(classifierNet(net).specs, openStream(["gold-test", "judge"]))
    const { bytes, session } = await classifierSession(net, judgeParams, 1)
    const rng = openStream(["gold-test", "x"])
    const count = 12
    const pixels = () => Float32Array.from({ length: count * 784 }, () => rng.uniform())
    const [tuned, base] = [pixels(), pixels()]
    const condition = Int32Array.from({ length: count }, (_, i) => i % 10)
    ortWeb.env.wasm.numThreads = 1
    const web = await ortWeb.InferenceSession.create(bytes)
    const logpOf = async (x: Float32Array) =>
      (await web.run({ x: new ortWeb.Tensor("float32", x, [count, 784]) })).logp.data as Float32Array
    const [lt, lb] = [await logpOf(tuned), await logpOf(base)]
    const mean = (f: (i: number) => number) =>
      Array.from({ length: count }, (_, i) => f(i)).reduce((a, b) => a + b) / count
    const lse = (l: Float32Array, i: number) => Math.log(Math.exp(l[i * 10 + 2]) + Math.exp(l[i * 10 + 7]))
    const tilt = await goldMetrics(session, 10, { tuned, base }, condition, [2, 7])
    // Two float32 runtimes: a few ulps per log-prob of ≈ −2.3.
    expect(tilt["eval.gold.s10"]).toBeCloseTo(mean((i) => lse(lt, i)), 5)
    expect(tilt["eval.gold_base.s10"]).toBeCloseTo(mean((i) => lse(lb, i)), 5)
    expect(tilt["eval.gold_improvement.s10"]).toBeCloseTo(mean((i) => lse(lt, i) - lse(lb, i)), 5)
    // The base's median gold (12 samples: the mean of the 6th and 7th), and the tuned samples below it.
    const baseGold = Array.from({ length: count }, (_, i) => lse(lb, i)).sort((a, b) => a - b)
    const median = (baseGold[5] + baseGold[6]) / 2
    const below = Array.from({ length: count }, (_, i) => lse(lt, i)).filter((v) => v < median).length / count
    expect(tilt["eval.gold_below_base_median.s10"]).toBe(below)
    const prompted = await goldMetrics(session, 4, { tuned, base }, condition, undefined)
    expect(prompted["eval.gold.s4"]).toBeCloseTo(mean((i) => lt[i * 10 + condition[i]]), 5)
    expect(prompted["eval.gold_improvement.s4.se"]).toBeGreaterThan(0)
    await session.release()
  })
})
