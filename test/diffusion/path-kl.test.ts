/** The path KL to the base (§13.3) against a Monte Carlo estimate from the sampled transitions themselves. */
import { describe, expect, it } from "vitest"
import { uniformGrid } from "../../diffusion/grids.ts"
import { pathKl } from "../../diffusion/path-kl.ts"
import type { Policy } from "../../diffusion/policy.ts"
import { rectifiedFlow } from "../../diffusion/process.ts"
import { rollout } from "../../diffusion/rollout.ts"
import { cps, flowGrpo, type Sampler } from "../../diffusion/samplers.ts"
import { openStream } from "../../random/streams.ts"

/** f(x, t) = −x·(1 − t) + shift·t: a smooth velocity field of two coordinates. */
const linear = (name: string, shift: number): Policy => ({
  name,
  shape: [2],
  process: rectifiedFlow,
  parameterization: "velocity",
  predict: (x, _batch, t) => x.map((v, i) => -v * (1 - t) + shift * t * (i % 2 === 0 ? 1 : -0.5))
})

describe("the path KL to the base", () => {
  it.each<[string, Sampler, number]>([["flow-grpo", flowGrpo, 0.7], ["cps", cps, 0.7]])(
    "with %s, equals the mean log-likelihood ratio of the sampled transitions within its Monte Carlo error",
    async (_, sampler, noise) => {
      const [policy, base] = [linear("tuned", 2), linear("base", 0)]
      const chains = 20_000
      const run = await rollout({
        policy,
        sampler,
        noise,
        grid: uniformGrid(6),
        chains,
        initStream: (j) => openStream(["kl", "init", j]),
        stepStream: (j) => openStream(["kl", "step", j]),
        record: true
      })
      const kl = await pathKl({ steps: run.steps, latents: run.latents!, chains, d: 2, policy, base })
      // Independently: Σ_k log N(x_{k+1}; μ_θ, s²) − log N(x_{k+1}; μ_base, s²) on the stored x_{k+1},
      // whose expectation under the policy's path is the KL; paired with `kl` chain by chain.
      const n = chains * 2
      const diff = new Float64Array(chains)
      let mc = 0
      for (let j = 0; j < chains; j++) {
        let ratio = 0
        for (const st of run.steps) {
          if (!(st.s > 0)) continue
          const x = run.latents!.subarray(st.step * n + 2 * j, st.step * n + 2 * j + 2)
          const next = run.latents!.subarray((st.step + 1) * n + 2 * j, (st.step + 1) * n + 2 * j + 2)
          const [f, g] = [policy.predict(x, 1, st.t) as Float32Array, base.predict(x, 1, st.t) as Float32Array]
          for (let i = 0; i < 2; i++) {
            const [muT, muB] = [st.a * x[i] + st.b * f[i], st.a * x[i] + st.b * g[i]]
            ratio += ((next[i] - muB) ** 2 - (next[i] - muT) ** 2) / (2 * st.s * st.s)
          }
        }
        mc += ratio / chains
        diff[j] = ratio - kl[j]
      }
      const mean = kl.reduce((a, b) => a + b, 0) / chains
      const dm = diff.reduce((a, b) => a + b, 0) / chains
      const se = Math.sqrt(diff.reduce((a, b) => a + (b - dm) ** 2, 0) / (chains - 1) / chains)
      expect(mean).toBeGreaterThan(1)
      // 4 s.e. of the paired Monte Carlo difference (KL ≈ 1–3 here, so a 5 % error in the formula fails it).
      expect(Math.abs(mc - mean)).toBeLessThan(4 * se)
      // The same policy has no KL from itself.
      const none = await pathKl({ steps: run.steps, latents: run.latents!, chains: 4, d: 2, policy: base, base })
      expect(Array.from(none)).toEqual([0, 0, 0, 0])
    }
  )
})
