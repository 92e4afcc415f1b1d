/**
 * `model.json`: the contract of an imported policy (docs/byom.md) — which graph inputs carry the latent,
 * the time and the class, what the output means, and the process it was trained for. Each field is
 * decoded on its own so an error names the field and what it must be.
 */
import { Exit, Schema } from "effect"

const Name = Schema.NonEmptyString
const Dims = Schema.Array(Schema.Int.check(Schema.isGreaterThan(0)))

const CONTRACT_FIELDS = {
  inputs: {
    schema: Schema.Struct({ latent: Name, time: Name, class: Schema.optionalKey(Name) }),
    allowed: `{ "latent": NAME, "time": NAME, "class"?: NAME } (the graph's input names)`
  },
  output: { schema: Name, allowed: "the graph's output name" },
  latentShape: { schema: Dims, allowed: "the latent's shape without the batch, e.g. [1, 28, 28]" },
  time: {
    schema: Schema.Literals(["unit", "thousand"]),
    allowed: `"unit" (t ∈ [0, 1]) or "thousand" (1000·t, diffusers' timesteps 0…999)`
  },
  parameterization: {
    schema: Schema.Literals(["velocity", "epsilon", "x0"]),
    allowed: `"velocity", "epsilon" or "x0"`
  },
  process: { schema: Schema.Literals(["rf", "vp"]), allowed: `"rf" (rectified flow) or "vp" (discrete VP)` },
  schedule: {
    schema: Schema.optionalKey(Schema.Literals(["linear", "scaled-linear", "cosine"])),
    allowed: `"linear", "scaled-linear" or "cosine" (vp only; default scaled-linear)`
  },
  classes: {
    schema: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(0))),
    allowed: "the number of classes, an integer ≥ 1 (the null condition of guidance is index `classes`)"
  }
} as const

type Fields = typeof CONTRACT_FIELDS
export type ModelContract = { readonly [K in keyof Fields]: Schema.Schema.Type<Fields[K]["schema"]> }

/** The contract, or the problems of each field (naming it and what it must be). */
export const decodeContract = (raw: unknown, file: string): ModelContract | Array<string> => {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return [`${file}: must be a JSON object`]
  const given = raw as Record<string, unknown>
  const problems: Array<string> = Object.keys(given).filter((k) => !(k in CONTRACT_FIELDS)).map((k) =>
    `${file}: field "${k}" is unknown (fields: ${Object.keys(CONTRACT_FIELDS).join(", ")})`
  )
  const out: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(CONTRACT_FIELDS)) {
    const value = key in given ? { [key]: given[key] } : {}
    const decoded = Schema.decodeUnknownExit(Schema.Struct({ [key]: field.schema }))(value)
    if (Exit.isSuccess(decoded)) out[key] = (decoded.value as Record<string, unknown>)[key]
    else {problems.push(
        `${file}: field "${key}" is ${JSON.stringify(given[key]) ?? "missing"}; must be ${field.allowed}`
      )}
  }
  return problems.length > 0 ? problems : (out as ModelContract)
}
