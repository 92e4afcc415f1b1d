/**
 * An imported policy checked before any run folder exists (docs/byom.md): the file is ONNX, its
 * contract (`X.json` beside `X.onnx`, else `model.json` in its folder) decodes, the contract's inputs,
 * output and shapes are the graph's, every op can be imported, and the whole graph imports for the
 * contract's latent shape. Each problem names the file and the field, input or node.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Graph } from "../engine/graph.ts"
import { decodeOnnx, unsupportedOp } from "../engine/onnx-import.ts"
import { messageOf } from "../schemas/message.ts"
import { decodeContract, type ModelContract } from "../schemas/model-contract.ts"
import { onnxNet, type OnnxNetConfig, sha256Of } from "./onnx-net.ts"

export const contractFileOf = (file: string): string => {
  const beside = file.replace(/\.onnx$/, "") + ".json"
  return fs.existsSync(beside) ? beside : path.join(path.dirname(file), "model.json")
}

interface GraphValue {
  readonly name: string
  readonly elemType: number
  readonly dims: ReadonlyArray<number | string>
}

const ELEM = { float32: 1, int64: 7 } as const

const valuesOf = (values: ReadonlyArray<any> | null | undefined): Array<GraphValue> =>
  (values ?? []).map((v) => ({
    name: String(v.name),
    elemType: Number(v.type?.tensorType?.elemType ?? 0),
    dims: (v.type?.tensorType?.shape?.dim ?? []).map((d: any) => (d.dimParam ? String(d.dimParam) : Number(d.dimValue)))
  }))

/** The contract's inputs and output against the graph's declared ones. */
const signatureProblems = (file: string, contract: ModelContract, bytes: Uint8Array): Array<string> => {
  const graph = decodeOnnx(bytes).graph
  const initialized = new Set((graph?.initializer ?? []).map((t) => t.name))
  const inputs = valuesOf(graph?.input).filter((v) => !initialized.has(v.name))
  const outputs = valuesOf(graph?.output)
  const problems: Array<string> = []
  const check = (
    role: string,
    name: string | undefined,
    among: Array<GraphValue>,
    type: keyof typeof ELEM,
    dims?: ReadonlyArray<number>
  ) => {
    if (name === undefined) return
    const v = among.find((i) => i.name === name)
    if (v === undefined) {
      return problems.push(
        `${file}: ${role} "${name}" is not a graph ${role === "output" ? "output" : "input"} ` +
          `(it has: ${among.map((i) => i.name).join(", ")})`
      )
    }
    if (v.elemType !== ELEM[type]) {
      problems.push(`${file}: ${role} "${name}" has element type ${v.elemType}, not ${type}`)
    }
    const want = dims === undefined ? 1 : dims.length + 1
    const fixed = v.dims.slice(1)
    if (
      v.dims.length !== want || (dims !== undefined && fixed.some((d, i) => typeof d === "number" && d !== dims[i]))
    ) {
      problems.push(
        `${file}: ${role} "${name}" has shape [${v.dims.join(", ")}], the contract gives [B${
          dims === undefined ? "" : `, ${dims.join(", ")}`
        }]`
      )
    }
  }
  check("latent", contract.inputs.latent, inputs, "float32", contract.latentShape)
  check("time", contract.inputs.time, inputs, "float32")
  check("class", contract.inputs.class, inputs, "int64")
  check("output", contract.output, outputs, "float32", contract.latentShape)
  const unbound = inputs.filter((i) => !Object.values(contract.inputs).includes(i.name))
  if (unbound.length > 0) {
    problems.push(`${file}: graph inputs ${unbound.map((i) => `"${i.name}"`).join(", ")} are not in the contract`)
  }
  return problems
}

const semanticProblems = (file: string, c: ModelContract): Array<string> => [
  ...(c.parameterization === "velocity" && c.process !== "rf"
    ? [`${file}: parameterization "velocity" needs process "rf" (it is "${c.process}")`]
    : []),
  ...((c.inputs.class === undefined) !== (c.classes === undefined)
    ? [`${file}: a "class" input and "classes" go together (one is given without the other)`]
    : [])
]

export type ImportedPolicy = { readonly net: OnnxNetConfig; readonly contract: ModelContract }

/** The imported policy of `file`, or every problem found with it (for exit 2 before a run starts). */
export const loadPolicyContract = (file: string): ImportedPolicy | Array<string> => {
  const abs = path.resolve(file)
  if (!fs.existsSync(abs)) return [`${file}: file not found`]
  const bytes = new Uint8Array(fs.readFileSync(abs))
  try {
    if (decodeOnnx(bytes).graph == null) return [`${file}: is not an ONNX model (it holds no graph)`]
  } catch (e) {
    return [`${file}: is not an ONNX model (${messageOf(e)})`]
  }
  const contractFile = contractFileOf(abs)
  if (!fs.existsSync(contractFile)) return [`${file}: its contract ${contractFile} is missing (docs/byom.md)`]
  let raw: unknown
  try {
    raw = JSON.parse(fs.readFileSync(contractFile, "utf8"))
  } catch (e) {
    return [`${contractFile}: is not JSON (${messageOf(e)})`]
  }
  const contract = decodeContract(raw, contractFile)
  if (Array.isArray(contract)) return contract
  const problems = [...semanticProblems(contractFile, contract), ...signatureProblems(file, contract, bytes)]
  const unsupported = unsupportedOp(bytes, file)
  if (unsupported !== undefined) problems.push(unsupported)
  if (problems.length > 0) return problems
  const net: OnnxNetConfig = {
    arch: "onnx",
    file: abs,
    sha256: sha256Of(bytes),
    dim: contract.latentShape.reduce((a, b) => a * b, 1),
    classes: contract.classes ?? 0,
    latentShape: contract.latentShape,
    inputs: contract.inputs,
    output: contract.output,
    time: contract.time
  }
  // A dry import for the contract's shapes: a mismatch deep in the graph (a Conv's channels, a Reshape)
  // is found now, with the node that has it.
  try {
    const model = onnxNet(net)
    const g = new Graph("contract-check")
    const params = Object.fromEntries(model.specs.map((s) => [s.name, g.input(s.name, "float32", s.shape)]))
    const x = g.input("x", "float32", ["B", net.dim])
    const t = g.input("t", "float32", ["B"])
    model.forward(g, params, x, t, net.classes > 0 ? g.input("c", "int64", ["B"]) : undefined)
  } catch (e) {
    return [messageOf(e)]
  }
  return { net, contract }
}
