/**
 * classifier: the MNIST classifier used as a reward model — from the model cache when one
 * was trained with the same config and seed, else trained now and cached. Its held-out accuracy
 * is measured every time. Other data sets have no reward classifier (the output is undefined).
 */
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import { splitOf } from "../../data/split.ts"
import { GraphError } from "../../engine/graph.ts"
import type { ParamValues } from "../../engine/params.ts"
import type { EngineSession } from "../../engine/session.ts"
import { SessionError } from "../../engine/session.ts"
import { TrainError } from "../../engine/train-step.ts"
import { Node, Port } from "../../kernel/node.ts"
import { NodeContext } from "../../kernel/services.ts"
import { loadCached, storeCached, weightsFile } from "../../models/cache.ts"
import { type ClassifierConfig, classifierNet } from "../../models/networks.ts"
import { openStream, permutation } from "../../random/streams.ts"
import { rewardTerms } from "../../rewards/rewards.ts"
import { defaultsOf, Setting } from "../../schemas/settings.ts"
import { accuracy, classifierSession, type ClassifierTraining, trainClassifier } from "../../training/classifier.ts"
import type { ModelFiles } from "./model-files.ts"

/** The classifier's training settings, with the network given by width and depth. */
export type RewardModelRequest = Omit<ClassifierTraining, "net"> & {
  readonly dataset: string
  readonly role: "reward" | "judge" | "proxy"
  readonly hidden: number
  readonly layers: number
  /** Train on the first this many digits of the training split (0: all of it). */
  readonly trainDigits: number
}

export interface RewardClassifier extends ModelFiles {
  readonly net: ClassifierConfig
  readonly params: ParamValues
  readonly session: EngineSession
  readonly testAccuracy: number
  readonly trainAccuracy: number
  readonly cached: boolean
  readonly role: RewardModelRequest["role"]
  /** Training digits it saw (the whole split's size unless `trainDigits` cut it). */
  readonly trainDigits: number
}

/** The reward classifier's settings: the `reward-model` pipeline's, and the defaults every other pipeline uses. */
export const RewardModelSettings = {
  dataset: Setting.literal(["mnist"], "mnist", "data set of the classifier"),
  role: Setting.literal(
    ["reward", "judge", "proxy"],
    "reward",
    "the reward model, the held-out judge that scores evaluations, or the weak proxy reward of " +
      "over-optimisation studies (each its own random stream and cache entry)"
  ),
  trainDigits: Setting.int(0, "train on the first N digits of the training split (0: all)", { min: 0 }),
  points: Setting.int(10_000, "unused for MNIST (kept for the shared data-set node)", { min: 1 }),
  hidden: Setting.int(512, "hidden width of the MLP classifier", { min: 1 }),
  layers: Setting.int(2, "hidden layers", { min: 1 }),
  epochs: Setting.int(40, "passes over the training split", { min: 1 }),
  batch: Setting.int(128, "minibatch size", { min: 1 }),
  lr: Setting.number(2e-3, "peak AdamW learning rate (cosine decay to 0)", { min: 0 }),
  weightDecay: Setting.number(1e-4, "AdamW decoupled weight decay", { min: 0 }),
  shift: Setting.int(2, "random translation of training digits, in pixels", { min: 0 }),
  threads: Setting.int(2, "onnxruntime intra-op threads (results are reproducible for a fixed count)", { min: 1 })
}

/**
 * `n` examples of a split drawn without replacement by a seeded permutation (the split is ordered by
 * class, so its first n would be one digit); all of it when n is 0 or at least its size.
 */
const someDigits = (split: ReturnType<typeof splitOf>, n: number, seed: number): ReturnType<typeof splitOf> => {
  if (n === 0 || n >= split.count) return split
  const rows = permutation(openStream([seed, "classifier", "subset"]), split.count).subarray(0, n)
  const x = new Float32Array(n * split.dim)
  rows.forEach((r, j) => x.set(split.x.subarray(r * split.dim, (r + 1) * split.dim), j * split.dim))
  return { ...split, count: n, x, label: Int32Array.from(rows, (r) => split.label[r]) }
}

const train = (data: arrow.Table, config: RewardModelRequest) =>
  Effect.gen(function*() {
    if (config.dataset !== "mnist") return undefined
    const { seed, note } = yield* NodeContext
    const report = NodeContext.throttled(note, config.epochs, `${config.role} classifier epoch`)
    // Keyed by role, not by the entry: `reward-model --set role=judge` trains the judge the RL pipelines use.
    const stream = openStream([seed, "classifier", config.role, "train"])
    const train = someDigits(splitOf(data, "train"), config.trainDigits, seed)
    const test = splitOf(data, "test")
    const net: ClassifierConfig = {
      dim: train.dim,
      hidden: config.hidden,
      layers: config.layers,
      classes: train.classes
    }
    const { epochs, batch, lr, weightDecay, shift, threads } = config
    const training: ClassifierTraining = { net, epochs, batch, lr, weightDecay, shift, threads }
    // A subset is part of the key only when asked for, so the full-split models keep their cache entries.
    const key = { training, seed, role: config.role, ...(config.trainDigits > 0 ? { digits: config.trainDigits } : {}) }
    const specs = classifierNet(net).specs
    return yield* Node.promise([GraphError, SessionError, TrainError], async () => {
      const hit = loadCached("reward-classifier", key, specs)
      const params = hit?.params ??
        (await trainClassifier({ ...train, side: train.shape[0] }, training, stream, (epoch, l) =>
          report(epoch + 1, `loss ${l.toFixed(4)}`)))
      const { bytes, session } = await classifierSession(net, params, config.threads)
      const testAccuracy = await accuracy(session, { ...test, side: test.shape[0] }, net.dim, net.classes)
      const trainAccuracy = await accuracy(session, { ...train, side: train.shape[0] }, net.dim, net.classes)
      const weights = weightsFile(params, specs, { kind: "reward-classifier", test_accuracy: String(testAccuracy) })
      if (hit === undefined) {
        storeCached("reward-classifier", key, { weights, onnx: bytes }, { test_accuracy: testAccuracy, net })
      }
      return {
        net,
        params,
        session,
        onnx: bytes,
        weights,
        testAccuracy,
        trainAccuracy,
        cached: hit !== undefined,
        role: config.role,
        trainDigits: train.count
      } satisfies RewardClassifier
    })
  })

const metrics = (out: RewardClassifier | undefined) =>
  out === undefined ? {} : {
    test_accuracy: out.testAccuracy,
    train_accuracy: out.trainAccuracy,
    // The proxy says how weak it is: its size and the digits it saw.
    ...(out.role === "proxy" ? { proxy_hidden: out.net.hidden, proxy_train_digits: out.trainDigits } : {})
  }
const judgeMetrics = (out: RewardClassifier | undefined) =>
  out === undefined ? {} : { judge_test_accuracy: out.testAccuracy, judge_train_accuracy: out.trainAccuracy }

/** classifier (the `reward-model` pipeline's stage): the classifier its settings describe. */
export const rewardClassifier = Node.make({
  name: "classifier",
  doc: "the MNIST reward classifier (cached by config and seed) with its held-out accuracy",
  inputs: { data: Port.of<arrow.Table>(), config: Port.of<RewardModelRequest>() },
  run: ({ data, config }) => train(data, config),
  exclusive: true,
  metrics
})

const defaults = defaultsOf(RewardModelSettings)

/**
 * The proxy of over-optimisation studies (`reward=proxy`): a deliberately weak reward classifier — one
 * hidden layer of 32, trained on 300 digits without shifts — whose reward can rise while the judge's
 * falls. `etaflow run reward-model --set role=proxy --set hidden=32 --set layers=1 --set trainDigits=300
 * --set epochs=20 --set shift=0` trains the same model.
 */
export const PROXY_REQUEST = {
  ...defaults,
  role: "proxy",
  hidden: 32,
  layers: 1,
  trainDigits: 300,
  epochs: 20,
  shift: 0
} as const

/** Whether a config's reward spec scores with the proxy classifier. */
export const usesProxy = (c: { readonly reward?: string | undefined }): boolean =>
  rewardTerms(c.reward ?? "").some((t) => t.name === "proxy")

/**
 * classifier of the other pipelines: the reward-model defaults (cached, so shared with `reward-model`),
 * or the weak proxy when the reward spec names `proxy`.
 */
export const defaultClassifier = Node.make({
  name: "classifier",
  doc: "the MNIST reward classifier at the reward-model defaults, or the weak proxy (cached), with its accuracy",
  inputs: {
    data: Port.of<arrow.Table>(),
    config: Port.of<{ readonly dataset: string; readonly threads: number; readonly reward?: string | undefined }>()
  },
  run: ({ data, config }) =>
    train(data, {
      ...(usesProxy(config) ? PROXY_REQUEST : defaults),
      dataset: config.dataset,
      threads: config.threads
    }),
  exclusive: true,
  metrics
})

/**
 * The judge: a second classifier with a different architecture (one hidden layer of 1,024 instead of
 * two of 512) and its own random stream, trained on the same split. It scores every evaluation, so a
 * reward gain it does not share shows up as a divergence — the first sign of reward hacking.
 * `etaflow run reward-model --set role=judge --set hidden=1024 --set layers=1` trains the same model.
 */
export const JUDGE_REQUEST = { ...defaults, role: "judge", hidden: 1024, layers: 1 } as const

export const defaultJudge = Node.make({
  name: "judge",
  doc: "the held-out judge classifier (one hidden layer of 1,024, its own stream; cached) and its accuracy",
  inputs: { data: Port.of<arrow.Table>(), config: Port.of<{ readonly dataset: string; readonly threads: number }>() },
  run: ({ data, config }) => train(data, { ...JUDGE_REQUEST, dataset: config.dataset, threads: config.threads }),
  exclusive: true,
  metrics: judgeMetrics
})
