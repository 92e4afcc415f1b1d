/**
 * Layers run one way: cli → experiments → pipelines → nodes → training → {diffusion, models, rewards, store,
 * schemas, data, report} → {engine, kernel, random}. The folder-level import graph of the sources is read from the
 * code and compared with the allowed edges; a forbidden import or a cycle fails here.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { pipelines } from "../pipelines/registry.ts"

/** The folders each folder may import from (besides itself). */
const ALLOWED: Readonly<Record<string, ReadonlyArray<string>>> = {
  random: [],
  schemas: [],
  store: ["schemas"],
  engine: ["random"],
  kernel: ["random", "schemas", "store"],
  diffusion: ["random"],
  data: ["random", "schemas", "store"],
  models: ["diffusion", "engine", "random", "schemas", "store"],
  rewards: ["data", "engine", "models"],
  report: ["data", "schemas", "store"],
  // The training loops (optimizer steps over a plan's minibatches), with no Effect: nodes are their adapters.
  training: ["diffusion", "engine", "models", "random"],
  nodes: ["data", "diffusion", "engine", "kernel", "models", "random", "rewards", "schemas", "store", "training"],
  pipelines: ["data", "diffusion", "kernel", "models", "nodes", "random", "report", "schemas", "store"],
  experiments: ["kernel", "pipelines", "report", "schemas", "store"],
  // The CLI names the samplers its `sample` command takes from where they are defined (no re-export shim).
  cli: ["diffusion", "experiments", "kernel", "pipelines", "report", "schemas", "store"],
  // Benchmarks drive what users drive (experiments, the CLI's processes) with the tests' helpers.
  bench: ["engine", "experiments", "kernel", "models", "nodes", "pipelines", "random", "schemas", "test"]
}

const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? sources(p) : /\.(ts|mjs)$/.test(e.name) ? [p] : []
  })

/** Folder → folders it imports, with one example file per edge. */
const importGraph = () => {
  const edges = new Map<string, Map<string, string>>()
  for (const folder of Object.keys(ALLOWED)) {
    for (const file of sources(folder)) {
      const text = fs.readFileSync(file, "utf8")
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
        const target = path.relative(".", path.resolve(path.dirname(file), m[1])).split(path.sep)[0]
        if (target === folder) continue
        if (!edges.has(folder)) edges.set(folder, new Map())
        edges.get(folder)!.set(target, file)
      }
    }
  }
  return edges
}

describe("the source folders", () => {
  const graph = importGraph()

  it("import only from the layers below them", () => {
    const forbidden = [...graph].flatMap(([from, targets]) =>
      [...targets].filter(([to]) => !ALLOWED[from].includes(to)).map(([to, file]) => `${from} → ${to} (${file})`)
    )
    expect(forbidden).toEqual([])
  })

  it("form no cycle", () => {
    const visiting = new Set<string>()
    const done = new Set<string>()
    const cycles: Array<string> = []
    const visit = (folder: string, trail: Array<string>) => {
      if (visiting.has(folder)) cycles.push([...trail, folder].join(" → "))
      if (visiting.has(folder) || done.has(folder)) return
      visiting.add(folder)
      for (const to of graph.get(folder)?.keys() ?? []) visit(to, [...trail, folder])
      visiting.delete(folder)
      done.add(folder)
    }
    for (const folder of graph.keys()) visit(folder, [])
    expect(cycles).toEqual([])
  })

  it("form no cycle between files either: no file imports itself through others", () => {
    const files = Object.keys(ALLOWED).flatMap(sources)
    const imports = new Map(files.map((file) => [
      file,
      [...fs.readFileSync(file, "utf8").matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) =>
        path.relative(".", path.resolve(path.dirname(file), m[1]))
      )
    ]))
    const state = new Map<string, "visiting" | "done">()
    const cycles: Array<string> = []
    const visit = (file: string, trail: ReadonlyArray<string>) => {
      if (state.get(file) === "visiting") cycles.push([...trail.slice(trail.indexOf(file)), file].join(" → "))
      if (state.has(file)) return
      state.set(file, "visiting")
      for (const to of imports.get(file) ?? []) visit(to, [...trail, file])
      state.set(file, "done")
    }
    for (const file of files) visit(file, [])
    expect(cycles).toEqual([])
  })

  it("keep the training loops free of Effect: plain async functions the nodes adapt", () => {
    const withEffect = sources("training").filter((f) => /from "effect(\/[^"]*)?"/.test(fs.readFileSync(f, "utf8")))
    expect(sources("training").length).toBeGreaterThan(0)
    expect(withEffect).toEqual([])
  })

  it("keep the kernel free of domain code", () => {
    const kernelImports = [...(graph.get("kernel")?.keys() ?? [])]
    for (const domain of ["nodes", "pipelines", "report", "diffusion", "models", "rewards", "data", "engine"]) {
      expect(kernelImports).not.toContain(domain)
    }
  })
})

describe("every registered pipeline", () => {
  it.each(pipelines.map((p) => [p.name, p] as const))(
    "%s names each stage once: its node's name is its entry's name",
    (_, p) => {
      const mismatched = Object.entries(p.nodes).filter(([entry, bound]) => bound.node.name !== entry).map((
        [entry, b]
      ) => `${entry} ≠ ${b.node.name}`)
      expect(mismatched).toEqual([])
    }
  )
})

describe("the sources", () => {
  it("keep lines within 120 characters (dprint.json formats them; `npm run format`)", () => {
    const long = Object.keys(ALLOWED).concat("test").flatMap((folder) =>
      sources(folder).flatMap((file) =>
        fs.readFileSync(file, "utf8").split("\n").flatMap((
          line,
          i
        ) => ([...line].length > 120 ? [`${file}:${i + 1}`] : []))
      )
    )
    expect(long).toEqual([])
  })
})

describe("the documentation the code cites", () => {
  const headings = new Set(
    [...fs.readFileSync("docs/algorithms.md", "utf8").matchAll(/^#{2,3} (\d+(?:\.\d+)?)\.? /gm)].map((m) => m[1])
  )

  it("has a section in docs/algorithms.md for every § the sources cite", () => {
    const cited = Object.keys(ALLOWED).concat("test").flatMap((folder) =>
      sources(folder).flatMap((file) =>
        [...fs.readFileSync(file, "utf8").matchAll(/§ ?(\d+(?:\.\d+)?)/g)].map((m) => ({ file, section: m[1] }))
      )
    )
    expect(cited.length).toBeGreaterThan(50)
    expect(cited.filter((c) => !headings.has(c.section)).map((c) => `${c.file}: §${c.section}`)).toEqual([])
  })

  it("names only documents that are in the repository", () => {
    const named = Object.keys(ALLOWED).concat("test").flatMap((folder) =>
      sources(folder).flatMap((file) =>
        [...fs.readFileSync(file, "utf8").matchAll(/\b(docs\/[\w./-]+\.md|[A-Z][A-Z0-9_-]+\.md)\b/g)].map((m) => ({
          file,
          doc: m[1]
        }))
      )
    )
    const missing = named.filter(({ file, doc }) =>
      !fs.existsSync(doc) && !fs.existsSync(path.join(path.dirname(file), doc))
    )
    expect(missing.map((m) => `${m.file}: ${m.doc}`)).toEqual([])
  })
})
