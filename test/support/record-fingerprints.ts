/**
 * Records every registered pipeline's fingerprints (test/support/fingerprints.ts) into
 * test/fixtures/pipeline-fingerprints.json — run by hand before a change meant to leave results unchanged:
 *   npx tsx test/support/record-fingerprints.ts
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { cpuKernelSignature, fingerprint, FINGERPRINT_CONFIGS } from "./fingerprints.ts"
import { isolateCache } from "./runs.ts"

isolateCache("fingerprints")
const pipelines: Record<string, Record<string, string>> = {}
for (const name of Object.keys(FINGERPRINT_CONFIGS)) pipelines[name] = await fingerprint(name)
const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim()
const record = { cpu: cpuKernelSignature(), commit, pipelines }
fs.writeFileSync("test/fixtures/pipeline-fingerprints.json", JSON.stringify(record, null, 2) + "\n")
