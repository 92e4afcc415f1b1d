/**
 * An evaluation's tables (eval/iter-N.parquet: the rewards of every sample at every step count;
 * eval-samples/iter-N.parquet: the base's and the fine-tuned ODE samples at the training step count) and
 * the two stages that hand them to the commit.
 */
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import { Node, Port } from "../../kernel/node.ts"
import { Column, TableDef } from "../../schemas/columns.ts"

export const EvalTable = new TableDef("eval", 1, {
  iteration: Column.int32("iteration whose weights were evaluated"),
  steps: Column.int32("sampling steps"),
  sample: Column.int32("sample index (same initial noise across samplers and step counts)"),
  prompt: Column.utf8("prompt", true),
  reward_ode: Column.float64("reward of the ODE sample of the fine-tuned model"),
  reward_sde: Column.float64("reward of the training-SDE sample of the fine-tuned model"),
  reward_base_ode: Column.float64("reward of the base model's ODE sample")
})

export interface Evaluation {
  readonly table: arrow.Table
  /** The base's and the tuned policy's ODE samples at the training step count, from the same noise. */
  readonly samples: arrow.Table
  readonly metrics: Readonly<Record<string, number>>
}

/** ODE samples of an evaluation at the training step count (the report shows them side by side). */
export const EvalSampleTable = new TableDef("eval-sample", 1, {
  iteration: Column.int32("iteration whose weights were evaluated"),
  steps: Column.int32("sampling steps (the training step count)"),
  sample: Column.int32("sample index (the same initial noise as in the eval table)"),
  prompt: Column.utf8("prompt", true),
  x_ode: Column.tensor("ODE sample of the fine-tuned policy"),
  x_base_ode: Column.tensor("ODE sample of the base model from the same noise")
})

/** One evaluation sample at one step count: its rewards. */
export interface EvalRow {
  steps: number
  sample: number
  prompt: string | null
  ode: number
  sde: number
  baseOde: number
}

/** The evaluation table of rows at every step count. */
export const tableOf = (rows: ReadonlyArray<EvalRow>, iteration: number, conditional: boolean) =>
  EvalTable.build(rows.length, {
    iteration: new Int32Array(rows.length).fill(iteration),
    steps: Int32Array.from(rows, (r) => r.steps),
    sample: Int32Array.from(rows, (r) => r.sample),
    prompt: conditional ? rows.map((r) => r.prompt) : null,
    reward_ode: Float64Array.from(rows, (r) => r.ode),
    reward_sde: Float64Array.from(rows, (r) => r.sde),
    reward_base_ode: Float64Array.from(rows, (r) => r.baseOde)
  }, {})

/** The ODE samples' table; `prompt` null for unconditional samples. */
export const sampleTableOf = (
  odeSamples: { readonly tuned: Float32Array; readonly base: Float32Array },
  set: { readonly count: number; readonly prompt: ReadonlyArray<string | null>; readonly conditional: boolean },
  iteration: number,
  steps: number,
  shape: ReadonlyArray<number>
) =>
  EvalSampleTable.build(set.count, {
    iteration: new Int32Array(set.count).fill(iteration),
    steps: new Int32Array(set.count).fill(steps),
    sample: Int32Array.from({ length: set.count }, (_, i) => i),
    prompt: set.conditional ? [...set.prompt] : null,
    x_ode: odeSamples.tuned,
    x_base_ode: odeSamples.base
  }, { x_ode: shape, x_base_ode: shape })

/** The ODE samples of an evaluation, when there was one (persisted as eval-samples/iter-N.parquet). */
export const evalSamples = Node.make({
  name: "evalSamples",
  doc: "base and fine-tuned ODE samples from the same noise at the training step count",
  inputs: { evaluation: Port.of<Evaluation | undefined>() },
  run: ({ evaluation }) => Effect.succeed(evaluation?.samples)
})

/** The evaluation table when this iteration was evaluated (for persisting eval/iter-N.parquet). */
export const evalTable = Node.make({
  name: "evalTable",
  doc: "the rows of an evaluation, when there was one",
  inputs: { evaluation: Port.of<Evaluation | undefined>() },
  run: ({ evaluation }) => Effect.succeed(evaluation?.table)
})
