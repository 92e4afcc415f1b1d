/** Versions recorded in every manifest: results depend on them. */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

// Read the package.json files directly: several packages do not export "./package.json".
const versionOf = (dir: string): string => {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version
  } catch {
    return "absent"
  }
}

export const packageVersions = (): Record<string, string> => ({
  etaflow: versionOf(root),
  node: process.versions.node,
  ...Object.fromEntries(
    ["effect", "apache-arrow", "parquet-wasm", "onnxruntime-node"].map((
      p
    ) => [p, versionOf(path.join(root, "node_modules", p))])
  )
})
