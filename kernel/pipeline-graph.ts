/**
 * A pipeline's graph checked before anything runs: entry names against the sources, every input wired from
 * an entry or a source, entries computed once reading only what is computed once, and no cycle; its levels
 * (Kahn's algorithm) are the order the run loop follows. Failures are PipelineDefinitionErrors naming nodes.
 */
import { PipelineDefinitionError } from "./errors.ts"
import type { AnyBound } from "./node.ts"

export const SOURCES = ["config", "state", "iteration"] as const

export type Spec = Readonly<Record<string, AnyBound>>

export const fail = (pipeline: string, message: string): never => {
  throw new PipelineDefinitionError({ pipeline, message: `pipeline ${pipeline}: ${message}` })
}

/** One entry's wiring: every input wired, from an entry or a source; nothing wired that the node lacks. */
const checkWiring = (pipeline: string, nodes: Spec, name: string) => {
  const names = Object.keys(nodes)
  const { node, wiring } = nodes[name]
  const wired = wiring as Record<string, string>
  const declared = Object.keys(node.inputs)
  for (const input of declared) {
    const from = wired[input]
    if (from === undefined) {
      fail(pipeline, `missing input: entry "${name}" (node ${node.name}) does not wire its input "${input}"`)
    }
    if (!names.includes(from) && !(SOURCES as ReadonlyArray<string>).includes(from)) {
      fail(
        pipeline,
        `missing input: entry "${name}" reads "${input}" from "${from}", which is neither an entry (${
          names.join(", ")
        }) nor a source (${SOURCES.join(", ")})`
      )
    }
    // An entry computed once may read only what is computed once too.
    if (nodes[name].memoized === true) {
      if (from === "state" || from === "iteration" || (names.includes(from) && nodes[from].memoized !== true)) {
        fail(
          pipeline,
          `entry "${name}" is computed once but reads "${input}" from "${from}", which changes between iterations`
        )
      }
    }
  }
  for (const input of Object.keys(wired)) {
    if (!declared.includes(input)) {
      fail(
        pipeline,
        `entry "${name}" wires "${input}", which node ${node.name} has no input for (inputs: ${
          declared.join(", ") || "none"
        })`
      )
    }
  }
  return declared.map((i) => wired[i]).filter((d) => names.includes(d))
}

/** Validates the graph and returns its levels; throws PipelineDefinitionError naming the nodes. */
export const validate = (pipeline: string, nodes: Spec, stateNext?: string): Array<Array<string>> => {
  const names = Object.keys(nodes)
  for (const name of names) {
    if ((SOURCES as ReadonlyArray<string>).includes(name)) {
      fail(pipeline, `duplicate name "${name}": an entry may not take the name of the source "${name}"`)
    }
  }
  const deps = new Map(names.map((name) => [name, checkWiring(pipeline, nodes, name)]))
  if (stateNext !== undefined && !names.includes(stateNext)) {
    fail(pipeline, `state.next names "${stateNext}", which is not an entry`)
  }
  // Kahn's algorithm by levels; what is left over lies on or behind a cycle.
  const levels: Array<Array<string>> = []
  const done = new Set<string>()
  while (done.size < names.length) {
    const ready = names.filter((n) => !done.has(n) && deps.get(n)!.every((d) => done.has(d)))
    if (ready.length === 0) {
      const left = names.filter((n) => !done.has(n))
      fail(pipeline, `cycle: ${findCycle(left, deps).join(" → ")}`)
    }
    ready.forEach((n) => done.add(n))
    levels.push(ready)
  }
  return levels
}

const findCycle = (left: ReadonlyArray<string>, deps: ReadonlyMap<string, ReadonlyArray<string>>): Array<string> => {
  // Walk dependencies from any leftover node until a node repeats: that stretch is a cycle.
  const path: Array<string> = []
  let current = left[0]
  while (!path.includes(current)) {
    path.push(current)
    current = deps.get(current)!.find((d) => left.includes(d))!
  }
  return [...path.slice(path.indexOf(current)), current]
}
