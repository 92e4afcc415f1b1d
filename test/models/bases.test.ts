/**
 * etaflow's U-Net and DiT bases: shapes, their zero-initialised outputs (training starts from f = 0, as
 * the MLP's), conditioning that reaches the output, and LoRA adapters that start as the base bit for bit.
 */
import { describe, expect, it } from "vitest"
import { Graph } from "../../engine/graph.ts"
import { initParams, type ParamValues } from "../../engine/params.ts"
import { EngineSession } from "../../engine/session.ts"
import { registerFrozen } from "../../models/lora.ts"
import { velocityNet, type VelocityNetConfig } from "../../models/velocity-net.ts"
import { baseNetOf } from "../../nodes/setup/base-model.ts"
import { loraConfigOf } from "../../nodes/setup/policy-model.ts"
import { openStream } from "../../random/streams.ts"

const B = 3

const outputs = async (net: VelocityNetConfig, params: ParamValues, classes: Array<number>) => {
  const model = velocityNet(net)
  const g = new Graph("base")
  const p = Object.fromEntries(model.specs.map((s) => [s.name, g.input(s.name, "float32", s.shape)]))
  const x = g.input("x", "float32", ["B", net.dim])
  const t = g.input("t", "float32", ["B"])
  const c = g.input("c", "int64", ["B"])
  g.output("f", model.forward(g, p, x, t, c))
  const session = await EngineSession.create(g, { threads: 1 })
  const rng = openStream(["bases", "x"])
  const out = await session.run({
    ...Object.fromEntries(model.specs.map((s) => [s.name, { data: params[s.name], dims: s.shape }])),
    x: { data: Float32Array.from({ length: B * net.dim }, () => rng.normal()), dims: [B, net.dim] },
    t: { data: Float32Array.of(0.1, 0.5, 0.9), dims: [B] },
    c: { data: BigInt64Array.from(classes, BigInt), dims: [B] }
  })
  await session.release()
  return out.f.data as Float32Array
}

/** Every zero-initialised weight drawn too: a network whose every path reaches the output. */
const drawn = (net: VelocityNetConfig) =>
  initParams(velocityNet(net).specs.map((s) => ({ ...s, init: { std: 0.05 } })), openStream(["bases", "w"]))

describe.each(["unet", "dit"] as const)("etaflow's %s base", (arch) => {
  const net = baseNetOf({ arch, hidden: 0, blocks: 0 }, 784, 10)

  it("starts at f = 0 on [B, 784] latents", async () => {
    const f = await outputs(net, initParams(velocityNet(net).specs, openStream(["bases", "init"])), [1, 2, 10])
    expect(f.length).toBe(B * 784)
    expect(f.every((v) => v === 0)).toBe(true)
  })

  it("responds to its condition: another class changes only that latent's output", async () => {
    const params = drawn(net)
    const [a, b] = [await outputs(net, params, [1, 2, 10]), await outputs(net, params, [1, 7, 10])]
    const row = (f: Float32Array, i: number) => Array.from(f.subarray(i * 784, (i + 1) * 784))
    expect(row(a, 0)).toEqual(row(b, 0))
    expect(row(a, 1)).not.toEqual(row(b, 1))
  })

  it("under fresh LoRA adapters computes the base bit for bit", async () => {
    const params = drawn(net)
    const lora = loraConfigOf(
      net,
      { base: "default", arch, lora: 4, loraAlpha: 0, loraTargets: "*" },
      registerFrozen(params)
    )
    expect(lora.targets.length).toBeGreaterThan(5)
    const adapters = initParams(velocityNet(lora).specs, openStream(["bases", "lora"]))
    const [base, adapted] = [await outputs(net, params, [1, 2, 10]), await outputs(lora, adapters, [1, 2, 10])]
    expect(Buffer.from(adapted.buffer).equals(Buffer.from(base.buffer))).toBe(true)
  })
})
