import { Effect } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { loadMnist } from "../../data/mnist.ts"
import { NodeContext, Rng } from "../../kernel/services.ts"
import { qualityOf, qualityReference, releaseQuality } from "../../nodes/eval/quality.ts"
import { trainingData } from "../../nodes/setup/dataset.ts"
import { JUDGE_REQUEST, rewardClassifier, type RewardModelRequest } from "../../nodes/setup/reward-classifier.ts"
import { openStream } from "../../random/streams.ts"
import { isolateCache } from "../support/runs.ts"

beforeAll(() => {
  isolateCache("sample-quality")
})

const inNode = <A, E>(entry: string, effect: Effect.Effect<A, E, NodeContext | Rng>) =>
  Effect.runPromise(effect.pipe(
    Effect.provideService(
      NodeContext,
      NodeContext.of({ pipeline: "test", entry, iteration: 0, seed: 0, note: () => {} })
    ),
    Effect.provideService(Rng, Rng.forCall(0, 0, entry))
  ))

describe("sample quality beside the reward", () => {
  it("ranks real held-out digits far above noise and shuffled labels, with the judge agreeing", async () => {
    const data = await inNode("data", trainingData.run({ config: { dataset: "mnist", points: 1 } }))
    // Small, briefly trained classifiers keep the test fast; the judge has the judge's shape, narrower.
    const quick: RewardModelRequest = {
      ...JUDGE_REQUEST,
      role: "reward",
      hidden: 128,
      layers: 2,
      epochs: 2,
      shift: 0,
      dataset: "mnist"
    }
    const classifier = (await inNode("classifier", rewardClassifier.run({ data, config: quick })))!
    const judge =
      (await inNode("judge", rewardClassifier.run({ data, config: { ...quick, role: "judge", layers: 1 } })))!
    const ref = await qualityReference(data, classifier, judge, 1)
    // Every 20th training digit (~400; not the reference's test digits), as samples of its own digit.
    const m = loadMnist(0.2)
    const train = m.split.flatMap((s, r) => (s === "train" ? [r] : []))
    const rows = train.filter((_, i) => i % 20 === 0)
    const pixels = new Float32Array(rows.length * 784)
    rows.forEach((r, j) => pixels.set(m.x.subarray(r * 784, (r + 1) * 784), j * 784))
    const condition = Int32Array.from(rows, (r) => m.label[r])
    const real = await qualityOf(ref, pixels, condition, rows.length)
    const noise = openStream(["noise-digits"])
    const noisy = await qualityOf(ref, pixels.map(() => noise.uniform()), condition, rows.length)
    const wrongLabels = await qualityOf(ref, pixels, condition.map((c) => (c + 1) % 10), rows.length)
    await releaseQuality(ref)
    // Measured: FD 2.3 real vs 560 noise, class FD 12 vs 601, judge 0.93 vs 0.09; wrong prompts: class FD 310,
    // judge 0.002. A broken trace or mean term would not separate them.
    expect(real.fd * 10).toBeLessThan(noisy.fd)
    expect(real.fdClass).toBeLessThan(noisy.fdClass)
    // Right digits, wrong prompts: overall FD unchanged, class FD and judge accuracy much worse.
    expect(wrongLabels.fd).toBeCloseTo(real.fd, 9)
    expect(wrongLabels.fdClass).toBeGreaterThan(2 * real.fdClass)
    expect(real.judge).toBeGreaterThan(0.85)
    expect(wrongLabels.judge).toBeLessThan(0.1)
    expect(noisy.diversity).toBeGreaterThan(0)
    expect(real.diversity).toBeGreaterThan(0)
  })
})
