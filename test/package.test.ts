import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { tempDir } from "./support/runs.ts"

const repo = path.resolve(import.meta.dirname, "..")
const tsc = path.join(repo, "node_modules", "typescript", "bin", "tsc")
const readme = fs.readFileSync(path.join(repo, "README.md"), "utf8")

/** The README's "Pipelines in a script" example: the code a user copies. */
const readmeScript = (): string => {
  const section = readme.slice(readme.indexOf("### Pipelines in a script"))
  return /```ts\n([\s\S]*?)```/.exec(section)![1]
}

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    skipLibCheck: true,
    types: [],
    typeRoots: [path.join(repo, "node_modules", "@types")]
  },
  files: ["script.ts"]
}

const compile = (project: string) => spawnSync(process.execPath, [tsc, "-p", project], { encoding: "utf8" })

let project = ""
let tarball = ""

beforeAll(() => {
  const packs = tempDir("pack")
  // `npm pack` runs the `prepack` build: compiled JavaScript and declarations in dist/.
  const out = execFileSync("npm", ["pack", "--json", "--pack-destination", packs], { cwd: repo, encoding: "utf8" })
  tarball = path.join(packs, (JSON.parse(out.slice(out.indexOf("["))) as Array<{ filename: string }>)[0].filename)
  project = tempDir("consumer")
  // As the README's set-up writes it: onnxruntime-node's CUDA download decided against in allowScripts.
  fs.writeFileSync(
    path.join(project, "package.json"),
    JSON.stringify({ name: "consumer", type: "module", private: true, allowScripts: { "onnxruntime-node": false } })
  )
  // From the npm cache that `npm ci` filled; the registry only for metadata it lacks.
  execFileSync("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball], { cwd: project })
}, 240_000)

describe("etaflow as an installed package", () => {
  it("ships compiled JavaScript, declarations, the command and the docs — no sources, tests, runs or caches", () => {
    const out = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).trim().split("\n")
    const files = out.map((f) => f.replace(/^package\//, ""))
    expect(files).toContain("dist/index.js")
    expect(files).toContain("dist/index.d.ts")
    for (const worker of ["store/commit-worker.mjs", "random/normals-worker.mjs", "engine/lane-worker.mjs"]) {
      expect(files).toContain(`dist/${worker}`)
    }
    expect(files).toContain("bin/etaflow.js")
    const unwanted = files.filter((f) => /^(test|runs|scratch|node_modules)\/|\.cache|(?<!\.d)\.ts$/.test(f))
    expect(unwanted).toEqual([])
  })

  it("runs the README's script from a project that imports only \"etaflow\", and replays its run", () => {
    fs.writeFileSync(path.join(project, "script.ts"), readmeScript())
    fs.writeFileSync(path.join(project, "tsconfig.json"), JSON.stringify(TSCONFIG))
    const built = compile(project)
    expect(built.stdout + built.stderr).toBe("")
    execFileSync(process.execPath, ["script.js"], { cwd: project, encoding: "utf8" })
    const rows = fs.readFileSync(path.join(project, "runs", "first", "metrics.jsonl"), "utf8")
    expect(rows).toContain("\"name\":\"rows\",\"value\":500")
    const replayed = JSON.parse(fs.readFileSync(path.join(project, "runs", "again", "manifest.json"), "utf8")) as {
      replay_of: { from: string }
      status: string
    }
    expect(replayed.replay_of.from).toBe("count")
    expect(replayed.status).toBe("complete")
    expect(fs.readFileSync(path.join(project, "runs", "again", "metrics.jsonl"), "utf8")).toContain(
      "\"name\":\"rows\",\"value\":500"
    )
  }, 120_000)

  it("rejects a wrong edge at compile time in that project too", () => {
    const wrong = readmeScript().replace("count.from({ table: \"data\" })", "count.from({ table: \"count\" })")
    expect(wrong).not.toBe(readmeScript())
    fs.writeFileSync(path.join(project, "script.ts"), wrong)
    const built = compile(project)
    expect(built.status).not.toBe(0)
    expect(built.stdout).toMatch(/count\.table ← count/)
  }, 120_000)

  it("installs a working etaflow command", () => {
    const bin = path.join(project, "node_modules", ".bin", "etaflow")
    const list = execFileSync(bin, ["list"], { cwd: project, encoding: "utf8" })
    expect(list).toMatch(/^quickstart\s/m)
    expect(execFileSync(bin, ["--version"], { cwd: project, encoding: "utf8" })).toContain("0.1.0")
  }, 60_000)
})
