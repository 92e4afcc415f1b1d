import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"
import { describe, expect, it } from "vitest"

/** Compiles the fixture with the project's compiler options and returns diagnostics by line. */
const diagnostics = (file: string) => {
  const config = ts.readConfigFile(path.resolve("tsconfig.json"), ts.sys.readFile)
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, path.resolve("."))
  const program = ts.createProgram([file], { ...parsed.options, noUnusedLocals: false })
  return ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file).map((d) => ({
    line: d.file!.getLineAndCharacterOfPosition(d.start!).line + 1,
    text: ts.flattenDiagnosticMessageText(d.messageText, "\n")
  }))
}

describe("pipeline edges are checked by the compiler", () => {
  const file = path.resolve("test/fixtures/types/bad-edge.ts")
  const lines = fs.readFileSync(file, "utf8").split("\n")
  const lineOf = (marker: string) => lines.findIndex((l) => l.includes(marker)) + 1
  const found = diagnostics(file)

  it("accept a pipeline whose edges carry the right types", () => {
    const goodEnd = lineOf("export const bad =")
    expect(found.filter((d) => d.line < goodEnd)).toEqual([])
  })

  it("reject wiring an output into a node that expects another type", () => {
    const d = found.find((x) => x.line === lineOf("BAD-EDGE"))
    expect(d?.text).toMatch(/rewards\.trajectories ← prompts/)
  })

  it("reject a node whose config needs a field the pipeline's settings lack", () => {
    expect(found.find((x) => x.line === lineOf("BAD-CONFIG"))?.text).toMatch(/prompts\.config ← config/)
  })

  it("reject an input that reads from a name the pipeline does not have", () => {
    expect(found.find((x) => x.line === lineOf("BAD-SOURCE"))?.text).toMatch(/unknownSource|rollout\.prompts ← promtps/)
  })

  it("report nothing else", () => {
    expect(found.map((d) => d.line).sort((a, b) => a - b)).toEqual(
      [lineOf("BAD-EDGE"), lineOf("BAD-CONFIG"), lineOf("BAD-SOURCE")].sort((a, b) => a - b)
    )
  })
})

describe("pipeline failures are typed", () => {
  const file = path.resolve("test/fixtures/types/error-channel.ts")
  const lines = fs.readFileSync(file, "utf8").split("\n")
  const found = diagnostics(file)

  it("give every registered pipeline an error channel of tagged errors a caller can catchTag on", () => {
    const marker = lines.findIndex((l) => l.includes("UNTYPED-ERROR")) + 1
    expect(found.filter((d) => d.line !== marker)).toEqual([])
  })

  it("refuse to register a pipeline whose node fails with an untyped error", () => {
    const marker = lines.findIndex((l) => l.includes("UNTYPED-ERROR")) + 1
    expect(found.find((d) => d.line === marker)?.text).toMatch(/not assignable to type 'RunnablePipeline'/)
  })
})
