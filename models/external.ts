/**
 * Loading an external ONNX model (a policy or a reward model) against a declared contract: every
 * declared input and output must exist with the declared element type and a compatible shape
 * (a symbolic dimension matches any size). Errors name the model, the value and both shapes.
 */
import { Data } from "effect"
import * as fs from "node:fs"
import onnxProto from "onnx-proto"
import { EngineSession } from "../engine/session.ts"
import { messageOf } from "../schemas/message.ts"

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

const { onnx } = onnxProto

const fits = (declared: ReadonlyArray<number | string>, actual: ReadonlyArray<number | string>) =>
  declared.length === actual.length &&
  declared.every((d, i) => typeof d === "string" || typeof actual[i] === "string" || d === actual[i])

type ValueInfo = { name: string; isTensor: boolean; type?: string; shape?: ReadonlyArray<number | string> }

/** Checks a model's inputs or outputs against its contract; throws naming the file, value and shapes. */
const checkValues = (
  file: string,
  kind: "input" | "output",
  want: Readonly<Record<string, ValueContract>>,
  have: ReadonlyArray<ValueInfo>
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

const ELEM_TYPES: Readonly<Record<number, string>> = { 1: "float32", 7: "int64", 9: "bool", 11: "float64" }

/**
 * The contract checked from the file alone (its protobuf), without starting a session: what a
 * pipeline checks before any folder exists. Returns the problem, or undefined.
 */
export const contractProblem = (file: string, contract: OnnxContract): string | undefined => {
  try {
    if (!fs.existsSync(file)) throw new ModelContractError({ file, message: `model ${file}: file not found` })
    const graph = onnx.ModelProto.decode(new Uint8Array(fs.readFileSync(file))).graph
    const infos = (values: ReadonlyArray<any> | null | undefined): Array<ValueInfo> =>
      (values ?? []).map((v) => {
        const tensor = v.type?.tensorType
        return {
          name: String(v.name),
          isTensor: tensor != null,
          ...(tensor == null ? {} : { type: ELEM_TYPES[Number(tensor.elemType)] ?? `type ${tensor.elemType}` }),
          shape: (tensor?.shape?.dim ?? []).map((d: any) => (d.dimParam ? String(d.dimParam) : Number(d.dimValue)))
        }
      })
    const initialized = new Set((graph?.initializer ?? []).map((t) => t.name))
    checkValues(file, "input", contract.inputs, infos(graph?.input).filter((v) => !initialized.has(v.name)))
    checkValues(file, "output", contract.outputs, infos(graph?.output))
    return undefined
  } catch (e) {
    return messageOf(e)
  }
}

export const loadOnnxModel = async (file: string, contract: OnnxContract, threads: number): Promise<EngineSession> => {
  if (!fs.existsSync(file)) throw new ModelContractError({ file, message: `model ${file}: file not found` })
  const session = await EngineSession.fromBytes(file, new Uint8Array(fs.readFileSync(file)), { threads })
  checkValues(file, "input", contract.inputs, session.session.inputMetadata as never)
  checkValues(file, "output", contract.outputs, session.session.outputMetadata as never)
  return session
}
