/** modelOnnx / modelWeights: the files of a trained model, as outputs the run store can persist. */
import { Effect } from "effect"
import { Node, Port } from "../../kernel/node.ts"

export interface ModelFiles {
  /** The model with its weights baked in (loadable by any ONNX runtime). */
  readonly onnx: Uint8Array
  /** The weights in safetensors. */
  readonly weights: Uint8Array
}

export const modelOnnx = Node.make({
  name: "onnx",
  doc: "the model as ONNX with weights as initializers",
  inputs: { model: Port.of<ModelFiles | undefined>() },
  run: ({ model }) => Effect.succeed(model?.onnx)
})

export const modelWeights = Node.make({
  name: "weights",
  doc: "the model's weights in safetensors",
  inputs: { model: Port.of<ModelFiles | undefined>() },
  run: ({ model }) => Effect.succeed(model?.weights)
})
