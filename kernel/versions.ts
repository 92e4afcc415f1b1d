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

/** A recorded version that differs from the one running now. */
export interface VersionChange {
  readonly package: string
  readonly from: string
  readonly to: string
}

/**
 * What differs between the versions a run folder recorded and `current`. Each of them can change results
 * (an onnxruntime or Node release may sum a reduction in another order, or round an elementary function
 * differently), so a resume or replay across a change no longer promises the bits of a run made in one go.
 */
export const versionChanges = (
  recorded: Readonly<Record<string, string>>,
  current: Readonly<Record<string, string>> = packageVersions()
): Array<VersionChange> =>
  [...new Set([...Object.keys(recorded), ...Object.keys(current)])].sort()
    .filter((p) => recorded[p] !== current[p])
    .map((p) => ({ package: p, from: recorded[p] ?? "absent", to: current[p] ?? "absent" }))

/** "onnxruntime-node 1.30.0 → 1.31.1, node 20.20.2 → 24.22.3" */
export const formatVersionChanges = (changes: ReadonlyArray<VersionChange>): string =>
  changes.map((c) => `${c.package} ${c.from} → ${c.to}`).join(", ")
