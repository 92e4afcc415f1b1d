/**
 * Every registered pipeline ends with the metrics and weights recorded in
 * test/fixtures/pipeline-fingerprints.json, bit for bit — the check a "behaviour unchanged" refactor
 * runs (record before: `npx tsx test/support/record-fingerprints.ts`). onnxruntime's float kernels
 * differ between instruction sets, so on a CPU whose set differs from the record's the comparison is
 * skipped, saying so; a run twice on one machine is bit-identical everywhere (test/rl/replay.test.ts).
 */
import * as fs from "node:fs"
import { beforeAll, describe, expect, it } from "vitest"
import { pipelines } from "../../pipelines/registry.ts"
import { cpuKernelSignature, fingerprint, FINGERPRINT_CONFIGS } from "../support/fingerprints.ts"
import { isolateCache } from "../support/runs.ts"

const record = JSON.parse(fs.readFileSync("test/fixtures/pipeline-fingerprints.json", "utf8")) as {
  readonly cpu: string
  readonly commit: string
  readonly pipelines: Readonly<Record<string, Readonly<Record<string, string>>>>
}
const sameKernels = record.cpu === cpuKernelSignature()

beforeAll(() => {
  isolateCache("fingerprints")
})

describe("the recorded fingerprints", () => {
  it("cover every registered pipeline", () => {
    expect(Object.keys(record.pipelines).sort()).toEqual(pipelines.map((p) => p.name).sort())
    expect(Object.keys(FINGERPRINT_CONFIGS).sort()).toEqual(pipelines.map((p) => p.name).sort())
  })

  it.skipIf(!sameKernels).each(Object.keys(FINGERPRINT_CONFIGS))(
    `%s ends with the metrics and weights recorded at ${record.commit} (CPU kernels ${record.cpu})`,
    async (name) => {
      expect(await fingerprint(name)).toEqual(record.pipelines[name])
    },
    120_000
  )
})
