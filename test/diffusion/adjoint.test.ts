import { describe, expect, it } from "vitest"
import { adjointRecursion, leanAdjoint, valueAdjoint } from "../../diffusion/adjoint.ts"
import { uniformGrid } from "../../diffusion/grids.ts"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { rollout, transitions } from "../../diffusion/rollout.ts"
import { flowGrpo, ode } from "../../diffusion/samplers.ts"
import { initParams } from "../../engine/params.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import { networkDrift, networkLeanAdjoint, networkVjp, valueAdjointStep } from "../../models/network-vjp.ts"
import { velocityNet } from "../../models/velocity-net.ts"
import { computeAdjoints } from "../../nodes/adjoint/adjoint.ts"
import { openStream } from "../../random/streams.ts"

// A small random velocity network on 2-D points; every weight drawn (zero-initialised layers included).
const net = { dim: 2, hidden: 16, blocks: 2, timeFeatures: 8, classes: 0 }
const draw = openStream(["adjoint-test"])
const params = Object.fromEntries(
  Object.entries(initParams(velocityNet(net).specs, draw)).map(([k, v]) => [k, v.map((w) => w + 0.3 * draw.normal())])
)
const base = { net, params, process: rectifiedFlow, parameterization: "velocity" as const, shape: [2] }
const lambda = 3
const batch = 3
const x0 = Float32Array.of(0.3, -1.2, 1.5, 0.4, -0.7, -0.9)

describe("the lean adjoint", () => {
  it("is the gradient of −λ r(x_K) with respect to x_k through the mean maps (central differences)", async () => {
    const policy = await networkPolicy({ ...base, cfg: 1, threads: 1 })
    // Flow-GRPO's SDE step at noise 0.7: its means μ_k = a_k x + b_k f(x, t_k) are what the adjoint differentiates.
    const steps = transitions({ policy, sampler: flowGrpo, noise: 0.7, grid: uniformGrid(5) })
    const mean = async (x: Float32Array, k: number) => {
      const f = await policy.predict(x, x.length / 2, steps[k].t)
      return Float32Array.from(x, (v, i) => steps[k].a * v + steps[k].b * f[i])
    }
    const run = async (x: Float32Array, from: number) => {
      const path = [x]
      for (let k = from; k < steps.length; k++) path.push(await mean(path[path.length - 1], k))
      return path
    }
    const path = await run(x0, 0)
    // r = −‖x‖²/2, so a_K = −λ ∇r = λ x_K and −λ r(x_K) = λ ‖x_K‖²/2.
    const cost = async (x: Float32Array, from: number) => {
      const end = (await run(x, from)).at(-1)!
      return Array.from({ length: batch }, (_, j) => (lambda * (end[2 * j] ** 2 + end[2 * j + 1] ** 2)) / 2)
    }
    const { vjp, release } = await networkVjp({ ...base, threads: 1 })
    const terminal = path.at(-1)!.map((v) => lambda * v)
    for (const from of [0, 3]) {
      const adjoints = await leanAdjoint({ steps, latent: (k) => path[k], batch, terminal, vjp, from })
      expect(adjoints.length).toBe(steps.length - from + 1)
      for (let i = 0; i < 2 * batch; i++) {
        const shifted = (h: number) => path[from].map((v, q) => (q === i ? v + h : v))
        const row = Math.floor(i / 2)
        // float32 forwards: h = 1e-3 keeps rounding (~1e-7/h) and curvature (~h²) both near 1e-4.
        const fd = ((await cost(shifted(1e-3), from))[row] - (await cost(shifted(-1e-3), from))[row]) / 2e-3
        expect(Math.abs(adjoints[0][i] - fd)).toBeLessThan(1e-3 + 1e-3 * Math.abs(fd))
      }
    }
    await release()
    await policy.release()
  })

  it("fused into one session per lane equals the step-by-step recursion, and its f the VJP pass's bits", async () => {
    // A conditional network, 40 rows on two lanes (20 each, above the lanes' minimum), so the lanes split rows.
    const cnet = { dim: 6, hidden: 16, blocks: 1, timeFeatures: 8, classes: 3 }
    const cparams = initParams(velocityNet(cnet).specs, openStream(["fused-lean"]))
    const rows = 40
    const condition = Int32Array.from({ length: rows }, (_, j) => j % 3)
    const noise = openStream(["fused-lean", "latents"])
    const path = Array.from({ length: 5 }, () => Float32Array.from({ length: rows * 6 }, () => noise.normal()))
    const steps = [0.9, 0.7, 0.5, 0.3].map((t, k) => ({ a: 1 - 0.1 * k, b: -0.2 - 0.05 * k, t }))
    const spec = { steps, latent: (k: number) => path[k], batch: rows, terminal: path[4] }
    const cbase = { net: cnet, params: cparams, process: rectifiedFlow, threads: 2, condition }
    const { vjp, forwardVjp } = await networkVjp({ ...cbase, frozen: true })
    const fused = networkLeanAdjoint(cbase)
    for (const from of [0, 2]) {
      const [stepwise, together] = [new Map<number, Float32Array>(), new Map<number, Float32Array>()]
      const reference = await leanAdjoint({ ...spec, from, vjp, forwardVjp, baseOutput: (k, f) => stepwise.set(k, f) })
      const got = await leanAdjoint({ ...spec, from, vjp, fused, baseOutput: (k, f) => together.set(k, f) })
      expect(got.length).toBe(reference.length)
      // The graph rounds a·next and b·J_fᵀnext to float32 before adding them; the step-wise combine once.
      got.forEach((a, i) =>
        a.forEach((v, q) => expect(Math.abs(v - reference[i][q])).toBeLessThan(1e-5 * (1 + Math.abs(v))))
      )
      expect([...together.keys()].sort()).toEqual([...stepwise.keys()].sort())
      for (const [k, f] of stepwise) expect(together.get(k)).toEqual(f)
    }
  })

  it("refuses a truncation outside the trajectory", async () => {
    const spec = { steps: [{ a: 1, b: 0, t: 1 }], latent: () => x0, batch, terminal: x0 }
    await expect(leanAdjoint({ ...spec, vjp: async () => x0, from: 2 })).rejects.toThrow(/from must be .* 0\.\.1/)
  })
})

describe("the value adjoint", () => {
  // A second network plays the base: the control δ_k = b_k (f_θ − f_base) is far from zero.
  const other = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.map((w) => w + 0.2 * draw.normal())]))
  const variance = (k: number) => 0.05 + 0.01 * k

  it("is the gradient of the cost-to-go (running + terminal cost) through the ODE (central differences)", async () => {
    const current = await networkDrift({ ...base, threads: 1 })
    const frozen = await networkDrift({ ...base, params: other, threads: 1 })
    const policy = await networkPolicy({ ...base, cfg: 1, threads: 1 })
    const steps = transitions({ policy, sampler: ode, noise: 0, grid: uniformGrid(5) })
    // J(x_from) = Σ_k ‖b_k (f_θ − f_base)‖² / (2 s_k²) + λ‖x_K‖²/2 along the closed-loop ODE, per row, in float64.
    const cost = async (x: Float32Array, from: number) => {
      const total = new Float64Array(batch)
      let path = x
      for (let k = from; k < steps.length; k++) {
        const [fc, fb] = [await current.forward(path, batch, steps[k].t), await frozen.forward(path, batch, steps[k].t)]
        for (let i = 0; i < 2 * batch; i++) {
          total[Math.floor(i / 2)] += (steps[k].b * (fc[i] - fb[i])) ** 2 / (2 * variance(k))
        }
        path = Float32Array.from(path, (v, i) => steps[k].a * v + steps[k].b * fc[i])
      }
      return Array.from(total, (c, j) => c + (lambda * (path[2 * j] ** 2 + path[2 * j + 1] ** 2)) / 2)
    }
    const path = [x0]
    for (let k = 0; k < steps.length; k++) {
      const f = await current.forward(path[k], batch, steps[k].t)
      path.push(Float32Array.from(path[k], (v, i) => steps[k].a * v + steps[k].b * f[i]))
    }
    const terminal = path.at(-1)!.map((v) => lambda * v)
    const spec = { steps, latent: (k: number) => path[k], batch, terminal, variance }
    for (const from of [0, 2]) {
      const adjoints = await valueAdjoint({ ...spec, current, base: frozen, from })
      for (let i = 0; i < 2 * batch; i++) {
        const shifted = (h: number) => path[from].map((v, q) => (q === i ? v + h : v))
        const row = Math.floor(i / 2)
        const fd = ((await cost(shifted(1e-3), from))[row] - (await cost(shifted(-1e-3), from))[row]) / 2e-3
        // float32 forwards, h = 1e-3: rounding ~1e-7/h and curvature ~h², as for the lean adjoint.
        expect(Math.abs(adjoints[0][i] - fd)).toBeLessThan(1e-3 + 1e-3 * Math.abs(fd))
      }
    }
    // Without control (the current policy is the base) the running cost vanishes: value = lean, up to the
    // float32 rounding of J_fᵀ(b·a) against b·J_fᵀa.
    const lean = await leanAdjoint({ ...spec, vjp: current.vjp })
    const value = await valueAdjoint({ ...spec, current, base: current })
    for (let k = 0; k < lean.length; k++) {
      lean[k].forEach((v, i) => expect(Math.abs(value[k][i] - v)).toBeLessThan(1e-5 * (1 + Math.abs(v))))
    }
    await Promise.all([current.release(), frozen.release(), policy.release()])
  })

  it("computed by the fused one-session step equals the four-call recursion (float32 rounding)", async () => {
    const current = await networkDrift({ ...base, threads: 1 })
    const frozen = await networkDrift({ ...base, params: other, threads: 1 })
    const policy = await networkPolicy({ ...base, cfg: 1, threads: 1 })
    const steps = transitions({ policy, sampler: ode, noise: 0, grid: uniformGrid(5) })
    const path = [x0]
    for (let k = 0; k < steps.length; k++) {
      const f = await current.forward(path[k], batch, steps[k].t)
      path.push(Float32Array.from(path[k], (v, i) => steps[k].a * v + steps[k].b * f[i]))
    }
    const spec = { steps, latent: (k: number) => path[k], batch, terminal: path.at(-1)!.map((v) => lambda * v) }
    const reference = await valueAdjoint({ ...spec, current, base: frozen, variance })
    const fused = await valueAdjointStep({ ...base, base: other, threads: 1 })
    const outputs: Array<Float32Array> = []
    const got = await adjointRecursion(spec, async (k, x, next) => {
      const out = await fused({
        params,
        x,
        batch,
        t: steps[k].t,
        next,
        a: steps[k].a,
        b: steps[k].b,
        variance: variance(k)
      })
      outputs[k] = out.fBase
      return out.adjoint
    })
    for (let k = 0; k < got.length; k++) {
      got[k].forEach((v, i) => expect(Math.abs(v - reference[k][i])).toBeLessThan(1e-4 * (1 + Math.abs(v))))
    }
    // f_base of the fused pass is the frozen network's output at x_k.
    const f0 = await frozen.forward(path[0], batch, steps[0].t)
    f0.forEach((v, i) => expect(Math.abs(v - outputs[0][i])).toBeLessThan(1e-5 * (1 + Math.abs(v))))
    await Promise.all([current.release(), frozen.release(), policy.release()])
  })
})

describe("the adjoint node's recursion", () => {
  it("stops at a non-finite adjoint, naming the terminal condition or step, trajectory and element", async () => {
    const policy = await networkPolicy({ ...base, cfg: 1, threads: 1 })
    const r = await rollout({
      policy,
      sampler: flowGrpo,
      noise: 0.7,
      grid: uniformGrid(2),
      chains: batch,
      record: true,
      initStream: (j) => draw.child("init", j),
      stepStream: (j) => draw.child("step", j)
    })
    await policy.release()
    const finite = new Float32Array(2 * batch).fill(0.5)
    // A VJP that returns its cotangent, except an infinite first element of trajectory 2 at the last step.
    let calls = 0
    const vjp = async (_x: Float32Array, _b: number, _t: number, v: Float32Array) => {
      const out = v.slice()
      if (calls++ === 0) out[4] = Number.POSITIVE_INFINITY
      return out
    }
    const drift = { forward: async (x: Float32Array) => x, vjp }
    const nan = Float32Array.from(finite, (v, i) => (i === 3 ? Number.NaN : v))
    await expect(computeAdjoints({ rollout: r, terminal: nan, kind: "lean", from: 0, base: drift })).rejects
      .toThrow("the terminal adjoint −λ∇r(x_N) is NaN for trajectory 1 (element 1)")
    await expect(computeAdjoints({ rollout: r, terminal: finite, kind: "lean", from: 0, base: drift })).rejects
      .toThrow(/the adjoint of step 0 is (NaN|-?Infinity) for trajectory 2 \(element 0\)/)
    calls = 0
    await expect(computeAdjoints({ rollout: r, terminal: finite, kind: "lean", from: 1, base: drift })).rejects
      .toThrow(/the adjoint of step 1 is -?Infinity for trajectory 2 \(element 0\)/)
  })
})
