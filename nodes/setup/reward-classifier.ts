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
import { TrainError } from "../../engine/train.ts"
import { Node, Port } from "../../kernel/node.ts"
import { NodeContext } from "../../kernel/services.ts"
import { loadCached, storeCached, weightsFile } from "../../models/cache.ts"
import { type ClassifierConfig, classifierNet } from "../../models/networks.ts"
import { openStream } from "../../random/streams.ts"
import { defaultsOf, Setting } from "../../schemas/settings.ts"
import { accuracy, classifierSession, type ClassifierTraining, trainClassifier } from "../../training/classifier.ts"
import type { ModelFiles } from "./model-files.ts"

/** The classifier's training settings, with the network given by width and depth. */
export type RewardModelRequest = Omit<ClassifierTraining, "net"> & {
  readonly dataset: string
  readonly role: "reward" | "judge"
  readonly hidden: number
  readonly layers: number
}

export interface RewardClassifier extends ModelFiles {
  readonly net: ClassifierConfig
  readonly params: ParamValues
  readonly session: EngineSession
  readonly testAccuracy: number
  readonly trainAccuracy: number
  readonly cached: boolean
}

/** The reward classifier's settings: the `reward-model` pipeline's, and the defaults every other pipeline uses. */
export const RewardModelSettings = {
  dataset: Setting.literal(["mnist"], "mnist", "data set of the classifier"),
  role: Setting.literal(
    ["reward", "judge"],
    "reward",
    "the reward model, or the held-out judge that scores evaluations (its own random stream and cache entry)"
  ),
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

const train = (data: arrow.Table, config: RewardModelRequest) =>
  Effect.gen(function*() {
    if (config.dataset !== "mnist") return undefined
    const { seed, note } = yield* NodeContext
    const report = NodeContext.throttled(note, config.epochs, `${config.role} classifier epoch`)
    // Keyed by role, not by the entry: `reward-model --set role=judge` trains the judge the RL pipelines use.
    const stream = openStream([seed, "classifier", config.role, "train"])
    const train = splitOf(data, "train")
    const test = splitOf(data, "test")
    const net: ClassifierConfig = {
      dim: train.dim,
      hidden: config.hidden,
      layers: config.layers,
      classes: train.classes
    }
    const { epochs, batch, lr, weightDecay, shift, threads } = config
    const training: ClassifierTraining = { net, epochs, batch, lr, weightDecay, shift, threads }
    const key = { training, seed, role: config.role }
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
        cached: hit !== undefined
      } satisfies RewardClassifier
    })
  })

const metrics = (out: RewardClassifier | undefined) =>
  out === undefined ? {} : { test_accuracy: out.testAccuracy, train_accuracy: out.trainAccuracy }
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

/** classifier of the other pipelines: the reward-model defaults (cached, so shared with `reward-model`). */
export const defaultClassifier = Node.make({
  name: "classifier",
  doc: "the MNIST reward classifier at the reward-model defaults (cached), with its held-out accuracy",
  inputs: { data: Port.of<arrow.Table>(), config: Port.of<{ readonly dataset: string; readonly threads: number }>() },
  run: ({ data, config }) => train(data, { ...defaults, dataset: config.dataset, threads: config.threads }),
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
