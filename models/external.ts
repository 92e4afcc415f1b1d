/**
 * Loading an external ONNX model (a policy or a reward model) against a declared contract: every
 * declared input and output must exist with the declared element type and a compatible shape
 * (a symbolic dimension matches any size). Errors name the model, the value and both shapes.
 */
import { Data } from "effect"
import * as fs from "node:fs"
import { EngineSession } from "../engine/session.ts"

export interface ValueContract {
  readonly dtype: "float32" | "float64" | "int64"
  /** Fixed sizes as numbers, free ones (batch) as names. */
  readonly shape: ReadonlyArray<number | string>
}

export interface OnnxContract {
  readonly inputs: Readonly<Record<string, ValueContract>>
  readonly outputs: Readonly<Record<string, ValueContract>>
}

/** An ONNX model file is missing or breaks its input/output contract (it names the file). */
export class ModelContractError
  extends Data.TaggedError("ModelContractError")<{ readonly file: string; readonly message: string }>
{}

const fits = (declared: ReadonlyArray<number | string>, actual: ReadonlyArray<number | string>) =>
  declared.length === actual.length &&
  declared.every((d, i) => typeof d === "string" || typeof actual[i] === "string" || d === actual[i])

export const loadOnnxModel = async (file: string, contract: OnnxContract, threads: number): Promise<EngineSession> => {
  if (!fs.existsSync(file)) throw new ModelContractError({ file, message: `model ${file}: file not found` })
  const session = await EngineSession.fromBytes(file, new Uint8Array(fs.readFileSync(file)), { threads })
  const check = (
    kind: "input" | "output",
    want: Readonly<Record<string, ValueContract>>,
    have: ReadonlyArray<{ name: string; isTensor: boolean; type?: string; shape?: ReadonlyArray<number | string> }>
  ) => {
    for (const [name, c] of Object.entries(want)) {
      const meta = have.find((m) => m.name === name)
      if (meta === undefined) {
        throw new ModelContractError({
          file,
          message: `model ${file}: has no ${kind} "${name}" (its ${kind}s: ${have.map((m) => m.name).join(", ")})`
        })
      }
      if (!meta.isTensor || meta.type !== c.dtype) {
        throw new ModelContractError({
          file,
          message: `model ${file}: ${kind} "${name}" is ${meta.type ?? "not a tensor"}, expected ${c.dtype}`
        })
      }
      if (!fits(c.shape, meta.shape ?? [])) {
        throw new ModelContractError({
          file,
          message: `model ${file}: ${kind} "${name}" has shape [${(meta.shape ?? []).join(", ")}], expected [${
            c.shape.join(", ")
          }]`
        })
      }
    }
  }
  check("input", contract.inputs, session.session.inputMetadata as never)
  check("output", contract.outputs, session.session.outputMetadata as never)
  return session
}
