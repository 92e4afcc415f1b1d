/**
 * Prompt sets: the built-in MNIST prompts ("a handwritten 3", encoded as the class 3), one prompt
 * per line of a text file, or the `prompt` column of a Parquet file. An encoder maps each prompt
 * to the condition the policy understands (a class index; −1 for unconditional toys).
 */
import * as fs from "node:fs"
import { fromParquet } from "../store/parquet.ts"

export interface PromptSet {
  readonly name: string
  readonly prompts: ReadonlyArray<string>
  /** Condition (class index) of each prompt; −1 when the policy is unconditional. */
  readonly conditions: Int32Array
}

export const MNIST_PROMPTS: PromptSet = {
  name: "mnist-digits",
  prompts: Array.from({ length: 10 }, (_, d) => `a handwritten ${d}`),
  conditions: Int32Array.from({ length: 10 }, (_, d) => d)
}

/** The MNIST networks' learned null condition (index = classes, docs/algorithms.md §11): the unconditional base. */
export const MNIST_NULL_CONDITION = 10

/** The tilt task's one unconditional "prompt": the MNIST base at its null condition (§13). */
export const TILT_PROMPTS: PromptSet = {
  name: "tilt",
  prompts: [""],
  conditions: Int32Array.of(MNIST_NULL_CONDITION)
}

/** One unconditional "prompt" for the 2-D toys. */
export const TOY_PROMPTS: PromptSet = { name: "unconditional", prompts: [""], conditions: Int32Array.of(-1) }

/** Maps a prompt to an MNIST class: the single digit it mentions ("a handwritten 7", "seven" is not understood). */
export const mnistCondition = (prompt: string, where: string): number => {
  const digits = prompt.match(/\d/g)
  if (digits === null || digits.length !== 1) {
    throw new Error(`${where}: prompt "${prompt}" should name exactly one digit 0–9`)
  }
  return Number(digits[0])
}

/** Loads a prompt set: "mnist", "toy", a .txt file (one prompt per line) or a .parquet file (column `prompt`). */
export const loadPromptSet = (spec: string, conditional: boolean): PromptSet => {
  if (spec === "mnist") return MNIST_PROMPTS
  if (spec === "toy") return TOY_PROMPTS
  if (!fs.existsSync(spec)) {
    throw new Error(`prompt set ${spec}: file not found (use "mnist", "toy", a .txt or a .parquet file)`)
  }
  let prompts: Array<string>
  if (spec.endsWith(".parquet")) {
    const table = fromParquet(new Uint8Array(fs.readFileSync(spec)), spec)
    const column = table.getChild("prompt")
    if (column === null) {
      throw new Error(
        `${spec}: a prompt Parquet file needs a "prompt" column (it has ${
          table.schema.fields.map((f) => f.name).join(", ")
        })`
      )
    }
    prompts = Array.from({ length: table.numRows }, (_, i) => String(column.get(i)))
  } else {
    prompts = fs.readFileSync(spec, "utf8").split("\n").map((l) => l.trim()).filter((l) => l !== "")
  }
  if (prompts.length === 0) throw new Error(`${spec}: no prompts`)
  return {
    name: spec,
    prompts,
    conditions: Int32Array.from(prompts, (p, i) => (conditional ? mnistCondition(p, `${spec}:${i + 1}`) : -1))
  }
}
