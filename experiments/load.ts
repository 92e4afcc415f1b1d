/** Finding an experiment by name among the built-ins, or loading it from a script that defines one. */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { UsageError } from "../kernel/errors.ts"
import { experiments, findExperiment } from "./builtin.ts"
import type { ExperimentDef } from "./experiment.ts"

const isExperiment = (v: unknown): v is ExperimentDef =>
  typeof v === "object" && v !== null && "arms" in v && Array.isArray(v.arms) && "name" in v

/**
 * A built-in name, or a .ts / .js file whose default export (or first exported value) is an
 * `Experiment.define(…)`. TypeScript files load through the tsx loader the CLI runs under in a clone
 * (`node --import tsx` elsewhere).
 */
export const loadExperiment = async (target: string, version = ""): Promise<ExperimentDef> => {
  const builtin = findExperiment(target)
  if (builtin !== undefined) return builtin
  if (!/\.(ts|mts|js|mjs)$/.test(target)) {
    throw new UsageError({
      message: `unknown experiment "${target}"; built-in: ${experiments.map((e) => e.name).join(", ")}, or a .ts file`
    })
  }
  if (!fs.existsSync(target)) throw new UsageError({ message: `experiment file ${target} does not exist` })
  // `version` (the script's hash, for a long-lived runner) makes a changed script a new module.
  const url = pathToFileURL(path.resolve(target)).href + (version === "" ? "" : `?v=${version}`)
  const module = (await import(url)) as Record<string, unknown>
  const found = isExperiment(module.default) ? module.default : Object.values(module).find(isExperiment)
  if (found === undefined) {
    throw new UsageError({ message: `${target} exports no experiment (export the value of Experiment.define(…))` })
  }
  return found
}

/** The sha256 of an experiment's script ("" for a built-in): what a cluster runner checks it loads. */
export const scriptHash = (target: string): string =>
  findExperiment(target) !== undefined
    ? ""
    : createHash("sha256").update(fs.readFileSync(target)).digest("hex")
