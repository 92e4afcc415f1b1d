/** Named parameters of a network: shapes, seeded initialization, and graph inputs for them. */
import type { RandomStream } from "../random/streams.ts"
import type { Graph, Tensor } from "./graph.ts"

export interface ParamSpec {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  /** "zeros", or a scaled normal (fan-in scaling, e.g. std = 1/√fan_in). */
  readonly init: "zeros" | { readonly std: number }
}

export type ParamValues = Record<string, Float32Array>

export const sizeOf = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

export const initParams = (specs: ReadonlyArray<ParamSpec>, rng: RandomStream): ParamValues =>
  Object.fromEntries(specs.map((p) => {
    const data = new Float32Array(sizeOf(p.shape))
    if (p.init !== "zeros") {
      const s = rng.child(p.name)
      for (let i = 0; i < data.length; i++) data[i] = p.init.std * s.normal()
    }
    return [p.name, data]
  }))

/** Declares every parameter as a float32 graph input and returns them by name. */
export const paramInputs = (g: Graph, specs: ReadonlyArray<ParamSpec>, prefix = ""): Record<string, Tensor> =>
  Object.fromEntries(specs.map((p) => [p.name, g.input(`${prefix}${p.name}`, "float32", p.shape)]))
