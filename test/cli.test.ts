import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { Graph } from "../engine/graph.ts"
import { toOnnx } from "../engine/onnx.ts"
import * as op from "../engine/ops.ts"
import { toyRl } from "./support/runs.ts"

const etaflow = (...args: Array<string>) => {
  const r = spawnSync(process.execPath, [path.resolve("bin/etaflow.js"), ...args], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" }
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-cli-"))

describe("the etaflow command", () => {
  it("lists one pipeline per line with a description", () => {
    const r = etaflow("list")
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^dataset\s+\S.*$/m)
  })

  it("runs a pipeline and prints the run directory last", () => {
    const out = path.join(tmp(), "ring")
    const r = etaflow(
      "run",
      "dataset",
      "--set",
      "name=double-ring",
      "--set",
      "n=500",
      "--seed",
      "3",
      "--out",
      out,
      "--progress",
      "lines"
    )
    expect(r.code).toBe(0)
    expect(r.stdout.trim().split("\n").at(-1)).toBe(out)
    expect(r.stderr).toMatch(/dataset iter 1\/1 node dataset .*s elapsed/)
    for (const f of ["manifest.json", "meta/info.json", "dataset.parquet", "metrics.jsonl", "metrics.parquet"]) {
      expect(fs.existsSync(path.join(out, f))).toBe(true)
    }
    const inspected = JSON.parse(etaflow("inspect", out, "--json").stdout)
    expect(inspected).toMatchObject({
      pipeline: "dataset",
      status: "complete",
      seed: 3,
      outputs: { dataset: { rows: 500 } }
    })
    expect(inspected.last_metrics.examples).toBe(500)
    const file = JSON.parse(etaflow("inspect", path.join(out, "dataset.parquet"), "--json").stdout)
    expect(file.columns.find((c: { name: string }) => c.name === "x").shape).toEqual([2])
  })

  it("exits 2 naming the field, the value and what is allowed, before making any folder", () => {
    const out = path.join(tmp(), "never")
    const r = etaflow("run", "dataset", "--set", "name=cifar", "--set", "n=0", "--set", "colour=red", "--out", out)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(
      /setting "name" must be one of mnist, double-ring, gaussian-mixture, two-moons, gmm25 \(given: "cifar"\)/
    )
    expect(r.stderr).toMatch(/setting "n" must be an integer ≥ 1 \(given: "0"\)/)
    expect(r.stderr).toMatch(/setting "colour" is unknown; allowed settings: name, n, testFraction/)
    expect(fs.existsSync(out)).toBe(false)
  })

  it("exits 2 for an unknown pipeline, a malformed flag, a bad config file and a missing run to resume", () => {
    expect(etaflow("run", "no-such-pipeline").code).toBe(2)
    expect(etaflow("run", "dataset", "--seed", "abc").code).toBe(2)
    const cfg = path.join(tmp(), "c.json")
    fs.writeFileSync(cfg, "[1, 2]")
    const bad = etaflow("run", "dataset", "--config", cfg)
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--config .*c\.json: expected a JSON object of settings/)
    const missing = etaflow("run", "dataset", "--resume", path.join(tmp(), "absent"))
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/not a run folder: .*manifest\.json is missing/)
  })

  it("exits 1 when a file it reads is corrupt, naming the file", () => {
    const file = path.join(tmp(), "broken.parquet")
    fs.writeFileSync(file, "PAR1 this is not parquet PAR1")
    const r = etaflow("inspect", file)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(file)
  })

  it("describes a pipeline's settings with their defaults", () => {
    const r = etaflow("run", "dataset", "--help")
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/testFraction\s+0\.2\s+fraction held out/)
  })

  it.each([
    [
      "a missing ONNX reward file",
      "flow-grpo",
      ["reward=onnx:/missing/reward.onnx"],
      /ONNX reward file \/missing\/reward\.onnx does not exist/
    ],
    ["an unknown reward", "ddpo", ["reward=beauty"], /reward "beauty" is not available for mnist/],
    [
      "a sampler the base model's process lacks",
      "ddpo",
      ["sampler=precise"],
      /sampler precise is defined for rf; this pipeline's base model is vp/
    ],
    ["a tilt target that names no digits", "flow-grpo", ["task=tilt", "target=seven"], /target "seven" should be/],
    ["the tilt task on a toy", "flow-grpo", ["task=tilt", "dataset=double-ring"], /task tilt tilts the MNIST base/],
    ["the proxy beside the true classifier", "flow-grpo", ["reward=proxy,classifier"], /proxy replaces the reward/],
    [
      "the prompted-digit reward on tilt",
      "sdpo",
      ["task=tilt", "reward=classifier"],
      /task tilt has no prompted digit for the classifier reward/
    ]
  ])("refuses %s with exit 2 before any folder exists", (_, pipeline, sets, message) => {
    const out = path.join(tmp(), "never")
    const r = etaflow("run", pipeline, ...sets.flatMap((s) => ["--set", s]), "--out", out, "--progress", "none")
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(fs.existsSync(out)).toBe(false)
  })

  it("logs pretraining progress without a TTY and ends an RL run with its improvement, gap and report", () => {
    const out = path.join(tmp(), "logged")
    const r = spawnSync(process.execPath, [
      path.resolve("bin/etaflow.js"),
      "run",
      "flow-grpo",
      "--out",
      out,
      "--progress",
      "lines",
      ...Object.entries({ ...toyRl, iterations: "2", evalEvery: "1", evalSamplesPerPrompt: "16" }).flatMap((
        [k, v]
      ) => ["--set", `${k}=${v}`])
    ], { encoding: "utf8", env: { ...process.env, ETAFLOW_CACHE: tmp() } })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/flow-grpo base: pretraining step 800\/800 loss \d/)
    const last = r.stderr.trim().split("\n").at(-1)
    expect(last).toMatch(
      /^flow-grpo done: ODE improvement at 6 steps -?\d+\.\d+ ± \d+\.\d+, SDE − ODE gap .* report .*report\.html$/
    )
  })

  it("refuses an ONNX reward whose output breaks the reward contract, naming it, with exit 2 before any folder", () => {
    const g = new Graph("wide-reward")
    const x = g.input("x", "float32", ["B", 784])
    g.output("reward", op.mul(x, 2))
    const model = path.join(tmp(), "wide.onnx")
    fs.writeFileSync(model, toOnnx(g))
    const out = path.join(tmp(), "never")
    const r = etaflow("run", "ddpo", "--set", `reward=onnx:${model}`, "--out", out, "--progress", "none")
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/output "reward" has shape \[B, 784\], expected \[batch\]/)
    expect(fs.existsSync(out)).toBe(false)
  })

  it("refuses a reward the engine cannot differentiate for adjoint matching, naming op and node, with exit 2", () => {
    // Clip is not among the importable ops: the reward scores, but has no gradient through the engine.
    const g = new Graph("clipped-reward")
    const x = g.input("x", "float32", ["B", 2])
    g.output("reward", op.reduceSum(op.clip(x, 0, 1), [1]))
    const model = path.join(tmp(), "clipped.onnx")
    fs.writeFileSync(model, toOnnx(g))
    const out = path.join(tmp(), "never")
    const r = etaflow(
      "run",
      "adjoint-matching",
      ...["dataset=double-ring", `reward=onnx:${model}`].flatMap((s) => ["--set", s]),
      "--out",
      out,
      "--progress",
      "none"
    )
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/has no gradient for adjoint matching: .*Clip/)
    expect(fs.existsSync(out)).toBe(false)
  })

  it("lists the built-in experiments and runs one defined in a script, refusing a bad --set with exit 2", () => {
    const listed = etaflow("experiment", "list")
    expect(listed.code).toBe(0)
    for (const name of ["eta-sweep", "few-step", "precise", "adjoint", "overoptimisation", "forward-process"]) {
      expect(listed.stdout).toContain(name)
    }
    const dir = tmp()
    const script = path.join(dir, "tiny.mts")
    const repo = path.resolve(".")
    fs.writeFileSync(
      script,
      [
        `import { Experiment } from "${repo}/experiments/experiment.ts"`,
        `import { flowGrpo } from "${repo}/pipelines/flow-grpo.ts"`,
        "const toy = { dataset: \"double-ring\", steps: 4, promptsPerIteration: 2, groupSize: 8, batchSize: 16,",
        "  evalSamplesPerPrompt: 16 }",
        "export default Experiment.define({ name: \"tiny\", doc: \"two noise levels\", seeds: 1, iterations: 1,",
        "  evaluate: { steps: [4] },",
        "  arms: [Experiment.arm(\"a\", flowGrpo, { ...toy, noiseLevel: 0.5 }),",
        "    Experiment.arm(\"b\", flowGrpo, toy)] })"
      ].join("\n")
    )
    const bad = etaflow("experiment", "run", script, "--set", "b.noiseLevel=-1", "--out", path.join(dir, "never"))
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/arm b: .*noiseLevel/)
    expect(fs.existsSync(path.join(dir, "never"))).toBe(false)
    const out = path.join(dir, "tiny")
    const r = etaflow("experiment", "run", script, "--out", out, "--progress", "none")
    expect(r.code, r.stderr).toBe(0)
    for (const f of ["experiment.json", "comparison.parquet", "comparison.md", "findings.md", "experiment.html"]) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true)
    }
    expect(etaflow("experiment", "report", out).stdout).toContain("comparison.parquet")
  })
})
