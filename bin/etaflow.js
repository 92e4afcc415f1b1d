#!/usr/bin/env node
// The `etaflow` command. In the repository the TypeScript sources run through tsx's loader (no build
// step); the installed package has no sources, only the compiled dist/.
import { existsSync } from "node:fs"

const source = new URL("../cli/main.ts", import.meta.url)
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api")
  register()
  await import(source.href)
} else {
  await import(new URL("../dist/cli/main.js", import.meta.url).href)
}
