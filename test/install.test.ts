import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { tempDir } from "./support/runs.ts"

const repo = path.resolve(import.meta.dirname, "..")
const pkg = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as {
  engines: { node: string }
  allowScripts: Record<string, boolean>
}

/** What a new user's machine has: no switch of ours in the environment, only the project's own files. */
const userEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  for (const key of Object.keys(env)) {
    if (/^(npm_|ONNXRUNTIME_NODE_INSTALL)/i.test(key)) delete env[key]
  }
  return env
}

const npm = (cwd: string, args: ReadonlyArray<string>) => {
  const out = spawnSync("npm", args, { cwd, env: userEnv(), encoding: "utf8" })
  return { status: out.status, text: out.stdout + out.stderr }
}

const warnings = (text: string) => text.split("\n").filter((l) => /^npm warn/i.test(l))

let clone = ""
let install = { status: null as number | null, text: "" }

beforeAll(() => {
  // The files `npm ci` reads in a fresh clone; the working tree's, so uncommitted changes are what is tested.
  clone = tempDir("clone")
  for (const f of ["package.json", "package-lock.json", ".npmrc"]) {
    if (fs.existsSync(path.join(repo, f))) fs.copyFileSync(path.join(repo, f), path.join(clone, f))
  }
  // From the npm cache that the repository's own `npm ci` filled; the registry only for what it lacks.
  install = npm(clone, ["ci", "--prefer-offline", "--no-audit", "--no-fund"])
}, 300_000)

describe("a fresh install", () => {
  it("succeeds without one npm warning about the project's configuration or its dependencies' engines", () => {
    expect(install.status, install.text).toBe(0)
    expect(warnings(install.text)).toEqual([])
  })

  it("decides every dependency's install script in allowScripts, and runs none of them", () => {
    // npm lists the packages whose scripts no entry covers; none, and every decision is a denial (the
    // onnxruntime-node one skips a CUDA download from a host outside the npm registry).
    const listed = npm(clone, ["install-scripts", "ls"])
    expect(listed.status, listed.text).toBe(0)
    expect(warnings(listed.text)).toEqual([])
    expect(listed.text).not.toMatch(/postinstall|preinstall|install:/)
    expect(Object.values(pkg.allowScripts).every((allowed) => allowed === false)).toBe(true)
    const cuda = path.join(
      clone,
      "node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so"
    )
    expect(fs.existsSync(cuda)).toBe(false)
  })

  it("leaves a tree `npm ls` finds whole, and later npm commands print no configuration warning", () => {
    const listed = npm(clone, ["ls"])
    expect(listed.status, listed.text).toBe(0)
    expect(listed.text).not.toMatch(/invalid|extraneous|missing/i)
    const exec = npm(clone, ["exec", "--offline", "--", "tsc", "--version"])
    expect(exec.status, exec.text).toBe(0)
    expect(warnings(exec.text)).toEqual([])
  })

  it("runs on a Node that package.json's engines admit", () => {
    const [major, minor] = process.versions.node.split(".").map(Number)
    const [wantMajor, wantMinor] = pkg.engines.node.replace(/^>=\s*/, "").split(".").map(Number)
    expect(major > wantMajor || (major === wantMajor && minor >= (wantMinor ?? 0))).toBe(true)
  })
})
