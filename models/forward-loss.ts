/**
 * Losses of RL on the forward process (docs/algorithms.md §14): no log-probabilities of a sampler, only the
 * network's prediction on the policy's own clean samples x0 re-noised, x_t = α_t·x0 + σ_t·ε, with one
 * affine map from the network output f to the clean-sample prediction, x̂0 = p·x_t + q·f (diffusion/
 * process.ts `predictions`: p = 1, q = −t for velocity; p = 1/α, q = −σ/α for ε). Per row:
 *
 * DiffusionNFT (arXiv 2509.16117 eq. 5 and Algorithm 1; NVlabs/DiffusionNFT `train_nft_sd3.py`):
 *   f⁺ = β f_θ + (1 − β) f_old,  f⁻ = (1 + β) f_old − β f_θ      (implicit positive and negative policies)
 *   L± = mean_i (x̂0(f±) − x0)² / sg(max(mean_i |x̂0(f±) − x0|, 1e-5))   (adaptive weighting, stop-gradient)
 *   r  = clip(A/(2·A_max) + ½, 0, 1),  loss = A_max·(r L⁺ + (1 − r) L⁻)/β   (A clipped to ±A_max = 5)
 * AWM, advantage-weighted matching (arXiv 2509.25050; Flow-Factory `trainers/awm.py`):
 *   lp = −mean_i (f_θ − f*)², f* the output that predicts x0 exactly (ε − x0 for velocity, ε for ε),
 *   lp_old the same at the rollout's weights, r = exp(lp − lp_old), PPO-clip max(−A r, −A clip(r, 1 ± ε)).
 * Both add β_KL·mean_i (f_θ − f_ref)² (the references' velocity-space KL) when β_KL > 0. The loss is
 * Σ_rows w_row·(policy + KL) with w summing to 1.
 */
import { type Graph, type Tensor } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import type { LossBuilder } from "../engine/train-step.ts"
import { velocityNet, type VelocityNetConfig } from "./velocity-net.ts"

export type ForwardKind = "nft" | "awm"

export interface ForwardLossConfig {
  readonly kind: ForwardKind
  readonly net: VelocityNetConfig
  /** KL coefficient to the base model's prediction (0: no reference forward). */
  readonly beta: number
  /** DiffusionNFT's β: how far the implicit policies sit from the old one (NVlabs default 1). */
  readonly nftBeta: number
  /** The advantage clip A_max (both references: 5). */
  readonly advClip: number
  /** AWM's PPO clip range ε of the ratio. */
  readonly clipRange: number
}

const rowInputs = (g: Graph, d: number, conditional: boolean) => ({
  xt: g.input("xt", "float32", ["M", d]),
  x0: g.input("x0", "float32", ["M", d]),
  target: g.input("target", "float32", ["M", d]),
  t: g.input("t", "float32", ["M"]),
  c: conditional ? g.input("c", "int64", ["M"]) : undefined,
  p: g.input("p", "float32", ["M"]),
  q: g.input("q", "float32", ["M"]),
  adv: g.input("adv", "float32", ["M"]),
  w: g.input("w", "float32", ["M"])
})

type Rows = ReturnType<typeof rowInputs>

const col = (v: Tensor) => op.unsqueeze(v, [1])
const rowMean = (v: Tensor) => op.reduceMean(v, [1])

/** The network's output at the rows under parameters given as graph inputs (`prefix.name`): no gradient. */
const frozenForward = (g: Graph, cfg: ForwardLossConfig, prefix: string, rows: Rows) => {
  const model = velocityNet(cfg.net)
  const p = Object.fromEntries(model.specs.map((s) => [s.name, g.input(`${prefix}.${s.name}`, "float32", s.shape)]))
  return model.forward(g, p, rows.xt, rows.t, rows.c)
}

/** DiffusionNFT's per-row loss: the implicit positive and negative policies' adaptively weighted x0 errors. */
const nftRows = (cfg: ForwardLossConfig, rows: Rows, f: Tensor, fOld: Tensor) => {
  const b = cfg.nftBeta
  const weighted = (fPm: Tensor) => {
    const err = op.sub(op.add(op.mul(col(rows.p), rows.xt), op.mul(col(rows.q), fPm)), rows.x0)
    const scale = op.stopGradient(op.max(rowMean(op.abs(err)), 1e-5))
    return op.div(rowMean(op.square(err)), scale)
  }
  const positive = weighted(op.add(op.mul(f, b), op.mul(fOld, 1 - b)))
  const negative = weighted(op.sub(op.mul(fOld, 1 + b), op.mul(f, b)))
  const r = op.clip(op.add(op.div(rows.adv, 2 * cfg.advClip), 0.5), 0, 1)
  const mixed = op.add(op.mul(r, positive), op.mul(op.sub(1, r), negative))
  return { perRow: op.mul(mixed, cfg.advClip / b), extra: {} }
}

/** AWM's per-row loss: PPO-clip on the ratio of the matching log-likelihoods. */
const awmRows = (cfg: ForwardLossConfig, rows: Rows, f: Tensor, fOld: Tensor) => {
  const lp = op.neg(rowMean(op.square(op.sub(f, rows.target))))
  const lpOld = op.neg(rowMean(op.square(op.sub(fOld, rows.target))))
  const ratio = op.exp(op.sub(lp, lpOld))
  const clipped = op.clip(ratio, 1 - cfg.clipRange, 1 + cfg.clipRange)
  const negA = op.neg(rows.adv)
  return { perRow: op.max(op.mul(negA, ratio), op.mul(negA, clipped)), extra: { ratio } }
}

export const forwardLoss = (cfg: ForwardLossConfig): LossBuilder => (g, params) => {
  const rows = rowInputs(g, cfg.net.dim, cfg.net.classes > 0)
  const f = velocityNet(cfg.net).forward(g, params, rows.xt, rows.t, rows.c)
  const fOld = frozenForward(g, cfg, "old", rows)
  let { perRow, extra } = cfg.kind === "nft" ? nftRows(cfg, rows, f, fOld) : awmRows(cfg, rows, f, fOld)
  const metrics: Record<string, Tensor> = {}
  if (cfg.beta > 0) {
    const kl = rowMean(op.square(op.sub(f, frozenForward(g, cfg, "ref", rows))))
    perRow = op.add(perRow, op.mul(kl, cfg.beta))
    metrics.kl = op.reduceSum(op.mul(kl, rows.w), [0])
  }
  return { loss: op.reduceSum(op.mul(perRow, rows.w), [0]), metrics, extra }
}
