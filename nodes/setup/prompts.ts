/**
 * prompts: the prompts of one iteration — `promptsPerIteration` prompts drawn from the prompt
 * set (a seeded permutation, cycling when more are asked than exist), each repeated `groupSize`
 * times as one group. Every drawn prompt appears exactly groupSize times.
 */
import { loadPromptSet, TILT_PROMPTS } from "../../data/prompts.ts"
import { Node, Port } from "../../kernel/node.ts"
import { Rng } from "../../kernel/services.ts"
import { permutation } from "../../random/streams.ts"

export interface PromptRequest {
  readonly dataset: string
  readonly task?: "prompted" | "tilt" | undefined
  readonly prompts: string
  readonly promptsPerIteration: number
  readonly groupSize: number
}

export interface PromptBatch {
  /** One entry per trajectory (group-major: group g holds rows g·k … g·k + k − 1). */
  readonly prompt: ReadonlyArray<string | null>
  readonly promptId: Int32Array
  /** Condition per trajectory (class index; −1 unconditional). */
  readonly condition: Int32Array
  readonly groupId: Int32Array
  readonly member: Int32Array
  readonly groups: number
  readonly groupSize: number
}

export const prompts = Node.make({
  name: "prompts",
  doc: "the iteration's prompts in groups of groupSize (seeded)",
  inputs: { config: Port.of<PromptRequest>() },
  run: ({ config }) =>
    Rng.useSync((rng) => {
      // Tilt samples the MNIST base unconditionally (its null condition); its prompts carry no text.
      const tilt = config.task === "tilt"
      const conditional = config.dataset === "mnist" && !tilt
      const set = tilt ? TILT_PROMPTS : loadPromptSet(
        config.prompts === "default" ? (conditional ? "mnist" : "toy") : config.prompts,
        conditional
      )
      const order = permutation(rng.stream("prompts"), set.prompts.length)
      const n = config.promptsPerIteration * config.groupSize
      const promptId = new Int32Array(n)
      for (let g = 0; g < config.promptsPerIteration; g++) {
        promptId.fill(order[g % order.length], g * config.groupSize, (g + 1) * config.groupSize)
      }
      return {
        prompt: Array.from(promptId, (p) => (conditional ? set.prompts[p] : null)),
        promptId,
        condition: Int32Array.from(promptId, (p) => set.conditions[p]),
        groupId: Int32Array.from({ length: n }, (_, i) => Math.floor(i / config.groupSize)),
        member: Int32Array.from({ length: n }, (_, i) => i % config.groupSize),
        groups: config.promptsPerIteration,
        groupSize: config.groupSize
      } satisfies PromptBatch
    }),
  metrics: (b) => ({ prompts: b.groups, trajectories: b.prompt.length })
})
