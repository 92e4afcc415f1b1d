import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { Node, Port } from "../../kernel/node.ts"
import { validate } from "../../kernel/pipeline-graph.ts"
import { Pipeline } from "../../kernel/pipeline.ts"
import { runPipeline } from "../../kernel/run.ts"

const num = Node.make({ name: "num", doc: "a number", inputs: {}, run: () => Effect.succeed(1) })
const inc = Node.make({
  name: "inc",
  doc: "x + 1",
  inputs: { x: Port.of<number>() },
  run: ({ x }) => Effect.succeed(x + 1)
})
const add = Node.make({
  name: "add",
  doc: "x + y",
  inputs: { x: Port.of<number>(), y: Port.of<number>() },
  run: ({ x, y }) => Effect.succeed(x + y)
})

// Bad graphs are built the way a dynamically assembled pipeline would be: without the compiler's help.
const untyped = (nodes: Record<string, unknown>) => nodes as never

describe("pipeline definitions", () => {
  it("order entries in levels of independent nodes", () => {
    expect(
      validate(
        "p",
        untyped({ a: num.from({}), b: inc.from({ x: "a" }), c: inc.from({ x: "a" }), d: add.from({ x: "b", y: "c" }) })
      )
    )
      .toEqual([["a"], ["b", "c"], ["d"]])
  })

  it("reject a cycle and name the nodes on it", () => {
    expect(() =>
      validate(
        "loop",
        untyped({ a: num.from({}), b: add.from({ x: "a", y: "d" }), c: inc.from({ x: "b" }), d: inc.from({ x: "c" }) })
      )
    )
      .toThrow(/pipeline loop: cycle: (b → d → c → b|c → b → d → c|d → c → b → d)/)
    expect(() => validate("self", untyped({ a: inc.from({ x: "a" }) }))).toThrow(/cycle: a → a/)
  })

  it("reject an input that reads from a name that does not exist", () => {
    expect(() => validate("p", untyped({ a: num.from({}), b: inc.from({ x: "nope" }) })))
      .toThrow(/missing input: entry "b" reads "x" from "nope", which is neither an entry \(a, b\) nor a source/)
  })

  it("reject an input that is not wired, and a wiring for an input the node lacks", () => {
    expect(() => validate("p", untyped({ a: num.from({}), b: add.from({ x: "a" } as never) })))
      .toThrow(/entry "b" \(node add\) does not wire its input "y"/)
    expect(() => validate("p", untyped({ a: num.from({}), b: inc.from({ x: "a", z: "a" } as never) })))
      .toThrow(/entry "b" wires "z", which node inc has no input for/)
  })

  it("reject duplicate names: an entry named like a source, or added twice", () => {
    expect(() => validate("p", untyped({ config: num.from({}) }))).toThrow(/duplicate name "config"/)
    const base = Pipeline.define({ name: "base", doc: "", settings: {}, nodes: { a: num.from({}) } })
    expect(() => Pipeline.extend(base, untyped({ a: inc.from({ x: "a" }) }))).toThrow(
      /pipeline base: duplicate name "a"/
    )
  })

  it("let an experiment swap one entry and keep the rest", () => {
    const base = Pipeline.define({
      name: "base",
      doc: "",
      settings: {},
      nodes: { a: num.from({}), b: inc.from({ x: "a" }) }
    })
    const swapped = Pipeline.replace(base, { b: add.from({ x: "a", y: "a" }) }, "swapped")
    expect(swapped.name).toBe("swapped")
    expect(swapped.nodes.b.node.name).toBe("add")
    expect(swapped.levels).toEqual([["a"], ["b"]])
  })

  it("run independent nodes concurrently", async () => {
    // Each of two independent nodes waits until both have started: run one after the other, they
    // would never finish (the bounded wait fails instead).
    let started = 0
    const rendezvous = Node.make({
      name: "rendezvous",
      doc: "waits for its sibling",
      inputs: {},
      run: () =>
        Effect.gen(function*() {
          started++
          for (let i = 0; i < 1000 && started < 2; i++) yield* Effect.sleep("1 millis")
          if (started < 2) return yield* Effect.fail(new Error("sibling never started: nodes ran one after the other"))
          return started
        })
    })
    const p = Pipeline.define({
      name: "concurrent",
      doc: "",
      settings: {},
      nodes: { a: rendezvous.from({}), b: rendezvous.from({}), c: add.from({ x: "a", y: "b" }) }
    })
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-conc-")), "run")
    const exit = await Effect.runPromiseExit(runPipeline(p, { out: dir, progress: "none" }))
    expect(Exit.isSuccess(exit) && exit.value.outputs.c).toBe(4)
  })

  it("run exclusive nodes of a level one at a time, beside the others", async () => {
    let active = 0
    let most = 0
    let overlappedPlain = false
    const busy = (exclusive: boolean) =>
      Node.make({
        name: exclusive ? "trainer" : "reader",
        doc: "records how many exclusive nodes run at once",
        inputs: {},
        exclusive,
        run: () =>
          Effect.gen(function*() {
            if (!exclusive) {
              // Waits (bounded) for an exclusive node to be running: under load the first may start late.
              for (let i = 0; i < 1000 && active === 0; i++) yield* Effect.sleep("1 millis")
              overlappedPlain = active > 0
              return 0
            }
            most = Math.max(most, ++active)
            yield* Effect.sleep("20 millis")
            active--
            return 1
          })
      })
    const p = Pipeline.define({
      name: "exclusive",
      doc: "",
      settings: {},
      nodes: { a: busy(true).from({}), b: busy(true).from({}), c: busy(true).from({}), d: busy(false).from({}) }
    })
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-excl-")), "run")
    await Effect.runPromise(runPipeline(p, { out: dir, progress: "none" }))
    expect(most).toBe(1)
    expect(overlappedPlain).toBe(true)
  })
})
