/** samplesTable: the Arrow table inside a node output that carries one (for persisting it). */
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import { Node, Port } from "../../kernel/node.ts"

export const tableOf = Node.make({
  name: "samplesTable",
  doc: "the table carried by an output",
  inputs: { from: Port.of<{ readonly table: arrow.Table }>() },
  run: ({ from }) => Effect.succeed(from.table)
})
