/**
 * Policy-gradient losses on the one Gaussian transition every sampler shares (docs/algorithms.md §0):
 * per transition row, μ = a·x + b·f_θ(x, t, c) and
 *   lp = −mean_i (x' − μ)²/(2s²) − log s − ½ log 2π            (docs/algorithms.md §0.1, mean convention)
 *   or, for FlowCPS (§6.2), its unnormalised lp = −mean_i (x' − μ)² — the one its sampler stores
 *   r  = exp(lp − lp_old)
 *   PPO-clip: max(−A r, −A clip(r, 1 − ε, 1 + ε))               (§4.2, §8; A clipped to ±5 beforehand)
 *   KL to the reference, klForm "paper": mean_i (μ − μ_ref)²/(2s²) (2505.05470 eq. 9, per element);
 *   klForm "code": flow_grpo's train_sd3.py divides by 2σ_t² with σ_t = s/√Δ, i.e. Δ·paper, where Δ is
 *   the step length in model time (input `kl_scale` = Δ or 1)
 *   Precise's ratio normalisation (§7.5; rl_trainer.py), per step as the reference loops over steps:
 *   log r = (lp − lp_old + mean_i (μ − μ_old)²/(2s²))·s, which removes the always-negative mean-shift
 *   part of the log-ratio and equalises steps, and the policy term of a row divided by |∂μ/∂f| = |b|
 *   of its step (s and b are one value per step, so the reference's batch means are these values).
 * The loss is Σ_rows w_row · (PPO + β·KL), with w summing to 1 over the rows.
 */
import type { LogProbConvention } from "../diffusion/samplers.ts"
import { type Graph, GraphError, type Tensor } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import type { LossBuilder } from "../engine/train-step.ts"
import { velocityNet, type VelocityNetConfig } from "./velocity-net.ts"

export interface PolicyLossConfig {
  readonly net: VelocityNetConfig
  /** Classifier-free guidance scale in the training forward (1 = none). */
  readonly cfg: number
  readonly clipRange: number
  /** KL coefficient β (0: no reference forward at all). */
  readonly beta: number
  /** Precise's ratio normalisation (needs the old means μ_old as an input). */
  readonly rationorm?: boolean
  /** The log-prob the training sampler stores (§6.2): the loss must use the same one. Default gaussian. */
  readonly logProb?: LogProbConvention
}

/**
 * Transition rows of one optimizer step, as graph inputs. The coefficients and old log-probs are
 * float64, and the log-prob is computed in float64 from the float32 latents and network output:
 * at the last VP steps s ≈ 0.02, so float32 rounding of μ (~1e-7) would move lp by ~1e-5 — as much
 * as the clip range — while the sampler's stored value is float64 (diffusion/logprob.ts).
 */
const rowInputs = (g: Graph, d: number, conditional: boolean, rationorm = false, kl = false) => ({
  muOld: rationorm ? g.input("mu_old", "float32", ["M", d]) : undefined,
  x: g.input("x", "float32", ["M", d]),
  t: g.input("t", "float32", ["M"]),
  c: conditional ? g.input("c", "int64", ["M"]) : undefined,
  xNext: g.input("x_next", "float32", ["M", d]),
  a: g.input("a", "float64", ["M"]),
  b: g.input("b", "float64", ["M"]),
  s: g.input("s", "float64", ["M"]),
  lpOld: g.input("lp_old", "float64", ["M"]),
  adv: g.input("adv", "float32", ["M"]),
  w: g.input("w", "float32", ["M"]),
  klScale: kl ? g.input("kl_scale", "float32", ["M"]) : undefined
})

const col = (v: Tensor) => op.unsqueeze(v, [1])
const f64 = (v: Tensor) => op.cast(v, "float64")
const f32 = (v: Tensor) => op.cast(v, "float32")

/** μ and lp of the rows under parameters p (guided forward when cfg ≠ 1). */
const meanAndLogProb = (
  g: Graph,
  cfg: PolicyLossConfig,
  p: Record<string, Tensor>,
  rows: ReturnType<typeof rowInputs>
) => {
  const model = velocityNet(cfg.net)
  const f = rows.c !== undefined && cfg.cfg !== 1
    ? model.guided(g, p, rows.x, rows.t, rows.c, cfg.cfg)
    : model.forward(g, p, rows.x, rows.t, rows.c)
  const mu = op.add(op.mul(f64(rows.x), col(rows.a)), op.mul(f64(f), col(rows.b)))
  const sq = op.reduceMean(op.square(op.sub(f64(rows.xNext), mu)), [1])
  const lp = cfg.logProb === "unnormalized"
    ? op.neg(sq)
    : op.sub(op.sub(op.neg(op.div(sq, op.mul(op.square(rows.s), 2))), op.log(rows.s)), 0.5 * Math.log(2 * Math.PI))
  return { f, mu, lp }
}

/** The log-probs alone, computed exactly as inside the loss (same ops, same order): the rescore graph. */
export const logProbGraph = (g: Graph, cfg: PolicyLossConfig, p: Record<string, Tensor>) => {
  const rows = rowInputs(g, cfg.net.dim, cfg.net.classes > 0)
  const { mu, lp } = meanAndLogProb(g, cfg, p, rows)
  g.output("lp", lp)
  if (cfg.rationorm === true) g.output("mu", mu)
}

export const ppoLoss = (cfg: PolicyLossConfig): LossBuilder => (g, p) => {
  if (cfg.rationorm === true && cfg.logProb === "unnormalized") {
    throw new GraphError({
      graph: "ppo-loss",
      message:
        `ppo-loss: Precise's ratio normalisation is defined for the Gaussian log-prob, not FlowCPS's unnormalised one`
    })
  }
  const rows = rowInputs(g, cfg.net.dim, cfg.net.classes > 0, cfg.rationorm === true, cfg.beta > 0)
  const { f, mu, lp } = meanAndLogProb(g, cfg, p, rows)
  const logRatio = rows.muOld === undefined
    ? op.sub(lp, rows.lpOld)
    : op.mul(
      op.add(
        op.sub(lp, rows.lpOld),
        op.div(op.reduceMean(op.square(op.sub(mu, f64(rows.muOld))), [1]), op.mul(op.square(rows.s), 2))
      ),
      rows.s
    )
  const ratio = op.exp(f32(logRatio))
  const clipped = op.clip(ratio, 1 - cfg.clipRange, 1 + cfg.clipRange)
  const negA = op.neg(rows.adv)
  let perRow = op.max(op.mul(negA, ratio), op.mul(negA, clipped))
  if (rows.muOld !== undefined) perRow = op.div(perRow, f32(op.max(rows.b, op.neg(rows.b))))
  const metrics: Record<string, Tensor> = {}
  if (cfg.beta > 0) {
    const model = velocityNet(cfg.net)
    const ref = Object.fromEntries(model.specs.map((s) => [s.name, g.input(`ref.${s.name}`, "float32", s.shape)]))
    const fRef = rows.c !== undefined && cfg.cfg !== 1
      ? model.guided(g, ref, rows.x, rows.t, rows.c, cfg.cfg)
      : model.forward(g, ref, rows.x, rows.t, rows.c)
    // μ − μ_ref = b·(f − f_ref): the x terms cancel exactly.
    const dMu = op.mul(f64(op.sub(f, fRef)), col(rows.b))
    const paperKl = f32(op.div(op.reduceMean(op.square(dMu), [1]), op.mul(op.square(rows.s), 2)))
    const kl = op.mul(paperKl, rows.klScale!)
    perRow = op.add(perRow, op.mul(kl, cfg.beta))
    metrics.kl = op.reduceSum(op.mul(kl, rows.w), [0])
  }
  const loss = op.reduceSum(op.mul(perRow, rows.w), [0])
  return { loss, metrics, extra: { ratio, lp } }
}

/**
 * SDPO's reward-difference regression with stepwise clipping (§9.4; sdpo train_sdpo.py). Rows come
 * in pairs (2i, 2i + 1): the two trajectories of one prompt from the same initial noise, at the same
 * step k. With dl = (lp₁ − lp₁ᵒˡᵈ) − (lp₂ − lp₂ᵒˡᵈ), dA = A₁ − A₂ (clipped ±5) and w = λ^k (input w):
 *   L = mean_pairs max( (w·dl − dA)², (w·dl_c − dA)² ),  lp_c = clamp(lp, lpᵒˡᵈ − ε, lpᵒˡᵈ + ε).
 */
export const sdpoLoss = (cfg: Omit<PolicyLossConfig, "beta">): LossBuilder => (g, p) => {
  const rows = rowInputs(g, cfg.net.dim, cfg.net.classes > 0)
  const { lp } = meanAndLogProb(g, { ...cfg, beta: 0 }, p, rows)
  const pairs = (v: Tensor) => op.reshape(v, [-1, 2], ["P", 2])
  const member = (v: Tensor, i: number) => op.slice(pairs(v), 1, i, i + 1)
  const diff = (v: Tensor) => op.sub(member(v, 0), member(v, 1))
  const dl = diff(f32(op.sub(lp, rows.lpOld)))
  const dA = diff(rows.adv)
  const w = member(rows.w, 0)
  let perPair = op.square(op.sub(op.mul(w, dl), dA))
  if (cfg.clipRange > 0) {
    const clamped = op.max(op.min(lp, op.add(rows.lpOld, cfg.clipRange)), op.sub(rows.lpOld, cfg.clipRange))
    perPair = op.max(perPair, op.square(op.sub(op.mul(w, diff(f32(op.sub(clamped, rows.lpOld)))), dA)))
  }
  return { loss: op.reduceMean(perPair, [0, 1]), extra: { ratio: op.exp(f32(op.sub(lp, rows.lpOld))), lp } }
}
