/** Versions recorded in every manifest: results depend on them. */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The version in the nearest package.json named `name` at or above `from`, or "absent". */
const versionAbove = (from: string, name: string): string => {
  for (let dir = from;; dir = path.dirname(dir)) {
    try {
      // Read package.json directly: several packages do not export "./package.json".
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as {
        name?: string
        version: string
      }
      if (pkg.name === name) return pkg.version
    } catch {
      // No package.json here: keep climbing.
    }
    if (path.dirname(dir) === dir) return "absent"
  }
}

/** Where a dependency resolves from this file (hoisted in a consumer's node_modules, or the repository's). */
const versionOf = (name: string): string => {
  try {
    return versionAbove(path.dirname(fileURLToPath(import.meta.resolve(name))), name)
  } catch {
    return "absent"
  }
}

export const packageVersions = (): Record<string, string> => ({
  etaflow: versionAbove(path.dirname(fileURLToPath(import.meta.url)), "etaflow"),
  node: process.versions.node,
  ...Object.fromEntries(["effect", "apache-arrow", "parquet-wasm", "onnxruntime-node"].map((p) => [p, versionOf(p)]))
})
