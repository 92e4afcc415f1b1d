/**
 * rewardClassifier: the MNIST classifier used as a reward model — from the model cache when one
 * was trained with the same config and seed, else trained now and cached. Its held-out accuracy
 * is measured every time. Other data sets have no reward classifier (the output is undefined).
 */
import { Effect } from "effect"
import type * as arrow from "apache-arrow"
import { Node, Port } from "../kernel/node.ts"
import { NodeContext, Rng } from "../kernel/services.ts"
import { splitOf } from "../data/split.ts"
import { classifierNet, type ClassifierConfig } from "../models/networks.ts"
import { accuracy, classifierSession, trainClassifier, type ClassifierTraining } from "../models/train-classifier.ts"
import { loadCached, storeCached, weightsFile } from "../models/cache.ts"
import type { ParamValues } from "../engine/params.ts"
import type { EngineSession } from "../engine/session.ts"
import type { ModelFiles } from "./model-files.ts"

/** The classifier's training settings, with the network given by width and depth. */
export type RewardModelRequest = Omit<ClassifierTraining, "net"> & {
  readonly dataset: string
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

export const rewardClassifier = Node.make({
  name: "rewardClassifier",
  doc: "the MNIST reward classifier (cached by config and seed) with its held-out accuracy",
  inputs: { data: Port.of<arrow.Table>(), config: Port.of<RewardModelRequest>() },
  run: ({ data, config }) =>
    Effect.gen(function*() {
      if (config.dataset !== "mnist") return undefined
      const { seed } = yield* NodeContext
      const rng = yield* Rng
      const train = splitOf(data, "train")
      const test = splitOf(data, "test")
      const net: ClassifierConfig = { dim: train.dim, hidden: config.hidden, layers: config.layers, classes: train.classes }
      const training: ClassifierTraining = { net, epochs: config.epochs, batch: config.batch, lr: config.lr, weightDecay: config.weightDecay, shift: config.shift, threads: config.threads }
      const key = { training, seed }
      const specs = classifierNet(net).specs
      return yield* Effect.tryPromise({
        try: async () => {
          const hit = loadCached("reward-classifier", key, specs)
          const params = hit?.params ?? (await trainClassifier({ ...train, side: train.shape[0] }, training, rng.stream("train")))
          const { bytes, session } = await classifierSession(net, params, config.threads)
          const testAccuracy = await accuracy(session, { ...test, side: test.shape[0] }, net.dim, net.classes)
          const trainAccuracy = await accuracy(session, { ...train, side: train.shape[0] }, net.dim, net.classes)
          const weights = weightsFile(params, specs, { kind: "reward-classifier", test_accuracy: String(testAccuracy) })
          if (hit === undefined) storeCached("reward-classifier", key, { weights, onnx: bytes }, { test_accuracy: testAccuracy, net })
          return { net, params, session, onnx: bytes, weights, testAccuracy, trainAccuracy, cached: hit !== undefined } satisfies RewardClassifier
        },
        catch: (e) => e
      })
    }),
  metrics: (out) => (out === undefined ? {} : { test_accuracy: out.testAccuracy, train_accuracy: out.trainAccuracy })
})
