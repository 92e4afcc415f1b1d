/**
 * The seeds' own questions as experiments with computed verdicts (docs/design.md, "Experiments"), on the
 * `tilt` task (docs/algorithms.md §13): the unconditional MNIST base tilted toward 7s, whose base draws a 7
 * in 5–6 % of its 10-step ODE samples and whose optimum's reward is known — room for the arms to separate.
 * Budgets are for this project's 2-core machine with the models cached; the base model, reward classifier
 * and judge are cached per run seed, so a first run of each seed also pretrains them (~5 min per seed and
 * process). Every arm is evaluated at ≥ 10 points; claims name where they are judged: the last
 * evaluation, the learning curves' mean level (`at: "area"`) or equal compute seconds (`at: "seconds"`).
 */
import { adjointMatching } from "../pipelines/adjoint-matching.ts"
import { awm } from "../pipelines/awm.ts"
import { ddpo } from "../pipelines/ddpo.ts"
import { deterministicAm } from "../pipelines/deterministic-am.ts"
import { diffusionNft } from "../pipelines/diffusion-nft.ts"
import { flowGrpo } from "../pipelines/flow-grpo.ts"
import { precisePipeline } from "../pipelines/precise.ts"
import { samplerCheck } from "../pipelines/sampler-check.ts"
import { sdpo } from "../pipelines/sdpo.ts"
import { type ArmClaim, Experiment } from "./experiment.ts"

const tilt = { task: "tilt", target: "7" } as const

/** The same comparison judged at the last evaluation and as the learning curves' mean level. */
const lastAndArea = (c: Omit<ArmClaim, "at">): Array<ArmClaim> => [
  c,
  { ...c, name: `${c.name} (mean level over training)`, at: "area" }
]

/** Seed 000 (Sheng et al.): more stochasticity, larger ODE improvement; the SDE − ODE gap narrows. */
export const etaSweep = Experiment.define({
  name: "eta-sweep",
  doc: "ddpo with gDDIM λ = η ∈ {1.0, 1.2, 1.5} and flow-grpo at noise level 0.5, 0.7, 1.0 on tilt (7s)",
  budget: "18 runs × 150 iterations (~0.6 s each) + 10 evaluations, ~35 min",
  seeds: 3,
  iterations: 150,
  evaluate: { steps: [10], every: 15 },
  arms: [
    ...[1, 1.2, 1.5].map((eta) => Experiment.arm(`eta-${eta.toFixed(1)}`, ddpo, { ...tilt, sampler: "gddim", eta })),
    ...[0.5, 0.7, 1].map((a) => Experiment.arm(`flow-${a.toFixed(1)}`, flowGrpo, { ...tilt, noiseLevel: a }))
  ],
  claims: [
    ...lastAndArea({
      name: "more noise, larger ODE gain (ddpo, gDDIM)",
      metric: "eval.improvement.s10",
      arm: "eta-1.5",
      than: "eta-1.0",
      direction: ">"
    }),
    ...lastAndArea({
      name: "more noise, larger ODE gain (flow-grpo)",
      metric: "eval.improvement.s10",
      arm: "flow-1.0",
      than: "flow-0.5",
      direction: ">"
    }),
    {
      name: "the gap narrows over training (η = 1)",
      metric: "eval.gap.s10",
      arm: "eta-1.0",
      over: "training",
      direction: "<"
    }
  ]
})

/** Seed 003 (SDPO): dense reward differences generalise to fewer steps than trained, DDPO does not. */
export const fewStep = Experiment.define({
  name: "few-step",
  doc: "sdpo vs ddpo on tilt (7s), trained at 10 steps, evaluated at 1, 2, 4, 8, 16 ODE steps",
  budget: "6 runs × 100 iterations (ddpo ~0.6 s, sdpo ~4.5 s each) + 10 evaluations, ~35 min",
  seeds: 3,
  iterations: 100,
  evaluate: { steps: [1, 2, 4, 8, 16], every: 10 },
  arms: [Experiment.arm("ddpo", ddpo, tilt), Experiment.arm("sdpo", sdpo, tilt)],
  // Both arms reach the reward's ceiling at every step count by iteration ~50 (measured), so the last
  // evaluation cannot tell them apart: the step-count claims are judged as the curves' mean level.
  claims: [
    ...[1, 2, 4].map((s): ArmClaim => ({
      name: `SDPO gains more at ${s} step${s > 1 ? "s" : ""} over training`,
      metric: `eval.improvement.s${s}`,
      arm: "sdpo",
      than: "ddpo",
      direction: ">",
      at: "area"
    })),
    {
      name: "SDPO gains more at 1 step per compute second",
      metric: "eval.improvement.s1",
      arm: "sdpo",
      than: "ddpo",
      direction: ">",
      at: "seconds"
    }
  ]
})

/**
 * Seed 004 (Precise): an SDE-consistent sampler learns faster than the Flow-GRPO SDE, CPS and DanceGRPO's —
 * every sampler trained as the paper trains them all, with Precise's recipe (the `precise` pipeline:
 * ratio normalisation, β = 0, per-group std, clip 4e-6) and its EMA evaluated (decay 0.9 every 8 steps,
 * flow_grpo's), at each sampler's reference level (Precise's `_default_noise_level`). Judged per compute
 * second and as the curves' mean level. The double-ring sampler table is its second part.
 */
export const precise = Experiment.define({
  name: "precise",
  doc: "Precise's recipe with the precise, flow-grpo, cps and dance-grpo samplers on tilt (7s); the double-ring table",
  budget: "12 RL runs × 150 iterations (~0.7 s each) + 10 evaluations + 3 sampler tables (~2 min each), ~35 min",
  seeds: 3,
  iterations: 150,
  evaluate: { steps: [10], every: 15 },
  arms: [
    ...([["precise", 1.5], ["flow-grpo", 0.7], ["cps", 0.7], ["dance-grpo", 0.3]] as const).map(([sampler, level]) =>
      Experiment.arm(sampler, precisePipeline, { ...tilt, sampler, noiseLevel: level, ema: 0.9 })
    ),
    Experiment.arm("double-ring-table", samplerCheck, { sampler: "all" })
  ],
  claims: ["flow-grpo", "cps", "dance-grpo"].flatMap((other): Array<ArmClaim> => [
    {
      name: `Precise learns faster than ${other} per compute second`,
      metric: "eval.normalised.s10",
      arm: "precise",
      than: other,
      direction: ">",
      at: "seconds"
    },
    {
      name: `Precise beats ${other} over training`,
      metric: "eval.normalised.s10",
      arm: "precise",
      than: other,
      direction: ">",
      at: "area"
    }
  ])
})

/**
 * Seed 002: deterministic adjoint matching, truncated, aligns with better diversity at less compute. At
 * λ = 1 the target of every arm is the real 7s (§13.1), so reward, FD and diversity have a known optimum.
 */
export const adjointExperiment = Experiment.define({
  name: "adjoint",
  doc: "adjoint-matching, deterministic-am with K = N and K = 3 (λ = 1), and flow-grpo on tilt (7s)",
  budget: "12 runs × 150 iterations (~0.5–0.7 s each) + 10 evaluations, ~25 min",
  seeds: 3,
  iterations: 150,
  evaluate: { steps: [10], every: 15 },
  arms: [
    Experiment.arm("flow-grpo", flowGrpo, tilt),
    Experiment.arm("adjoint-matching", adjointMatching, { ...tilt, lambda: 1 }),
    Experiment.arm("dam-full", deterministicAm, { ...tilt, lambda: 1, adjointSteps: 0 }),
    Experiment.arm("dam-K3", deterministicAm, { ...tilt, lambda: 1, adjointSteps: 3 })
  ],
  claims: [
    ...lastAndArea({
      name: "adjoint matching aligns better",
      metric: "eval.normalised.s10",
      arm: "adjoint-matching",
      than: "flow-grpo",
      direction: ">"
    }),
    {
      name: "truncated AM keeps diversity",
      metric: "eval.diversity_target.s10",
      arm: "dam-K3",
      than: "flow-grpo",
      direction: ">"
    },
    {
      name: "truncated AM lands nearer the real 7s",
      metric: "eval.fd_target.s10",
      arm: "dam-K3",
      than: "flow-grpo",
      direction: "<"
    },
    {
      name: "truncation costs no alignment",
      metric: "eval.normalised.s10",
      arm: "dam-K3",
      than: "dam-full",
      direction: ">"
    },
    {
      name: "truncated AM aligns faster per compute second",
      metric: "eval.normalised.s10",
      arm: "dam-K3",
      than: "dam-full",
      direction: ">",
      at: "seconds"
    }
  ]
})

/**
 * Over-optimisation on purpose (docs/algorithms.md §13.4–13.5, §4.5, §14): every arm trains against the weak
 * proxy classifier on tilt (7s); the gold is the distance to the real 7s (Fréchet, lower is better), with the
 * judge's score beside it. Claims are read at common levels: gold at equal proxy reward, gold at equal path KL,
 * and the compute seconds to reach the proxy reward the weaker arm ends at.
 */
const proxy = { ...tilt, reward: "proxy" } as const

export const overoptimisation = Experiment.define({
  name: "overoptimisation",
  doc: "flow-grpo (β 0, 0.04, GRPO-Guard), diffusion-nft, awm and adjoint matching against a weak proxy on tilt (7s)",
  budget:
    "18 runs × 120 iterations + 12 evaluations, ~28 min with the models cached (39 min with seeds 1–2 pretraining)",
  seeds: 3,
  iterations: 120,
  evaluate: { steps: [10], every: 10 },
  arms: [
    // flow-grpo turns later than the others (a 300-iteration seed-0 run: FD minimum at 119): 250 iterations.
    Experiment.arm("flow-grpo", flowGrpo, { ...proxy, beta: 0, iterations: 250 }),
    Experiment.arm("flow-grpo-kl", flowGrpo, { ...proxy, beta: 0.04, iterations: 250 }),
    Experiment.arm("grpo-guard", flowGrpo, { ...proxy, beta: 0, guard: true }),
    Experiment.arm("diffusion-nft", diffusionNft, proxy),
    Experiment.arm("awm", awm, proxy),
    Experiment.arm("adjoint-matching", adjointMatching, { ...proxy, lambda: 1 })
  ],
  claims: [
    {
      name: "GRPO-Guard keeps the samples nearer the real 7s at equal proxy reward",
      metric: "eval.fd_target.s10",
      arm: "grpo-guard",
      than: "flow-grpo",
      direction: "<",
      at: { equal: "eval.improvement.s10" }
    },
    {
      name: "GRPO-Guard keeps a higher judge's gold at equal proxy reward",
      metric: "eval.gold.s10",
      arm: "grpo-guard",
      than: "flow-grpo",
      direction: ">",
      at: { equal: "eval.improvement.s10" }
    },
    {
      name: "DiffusionNFT reaches flow-grpo's proxy reward in fewer compute seconds",
      metric: "eval.improvement.s10",
      arm: "diffusion-nft",
      than: "flow-grpo",
      direction: "<",
      at: "reach"
    },
    {
      name: "the KL penalty improves the gold–KL front",
      metric: "eval.fd_target.s10",
      arm: "flow-grpo-kl",
      than: "flow-grpo",
      direction: "<",
      at: { equal: "eval.path_kl.s10" }
    }
  ]
})

/**
 * RL on the forward process from both bases (docs/algorithms.md §14): DiffusionNFT and AWM against the proxy on
 * tilt (7s), rolled out with the ODE, on the rectified-flow and the VP base; each claim: the judge's gold
 * rises over training (seed 0's runs rose in 30 iterations on either base).
 */
export const forwardProcess = Experiment.define({
  name: "forward-process",
  doc: "diffusion-nft and awm on the RF and the VP base against the proxy on tilt (7s), ODE rollouts",
  budget:
    "12 runs × 30 iterations + 3 evaluations, ~8 min with the models cached (a first VP run per seed pretrains ~5 min)",
  seeds: 3,
  iterations: 30,
  evaluate: { steps: [10], every: 10 },
  arms: [
    Experiment.arm("nft-rf", diffusionNft, { ...proxy, process: "rf" }),
    Experiment.arm("nft-vp", diffusionNft, { ...proxy, process: "vp" }),
    Experiment.arm("awm-rf", awm, { ...proxy, process: "rf" }),
    Experiment.arm("awm-vp", awm, { ...proxy, process: "vp" })
  ],
  claims: ["nft-rf", "nft-vp", "awm-rf", "awm-vp"].map((arm) => ({
    name: `${arm} raises the judge's gold`,
    metric: "eval.gold.s10",
    arm,
    over: "training" as const,
    direction: ">" as const
  }))
})

/**
 * Bring your own model (docs/byom.md): LoRA flow-grpo on tilt (7s) on the PyTorch U-Net fixture (imported
 * from ONNX, briefly trained in PyTorch) and on etaflow's own U-Net base; each claim: the ODE reward rises
 * over the base. Smaller iterations than flow-grpo's default (8 prompts × 8) and LoRA's learning rate
 * (flow_grpo's SD3 LoRA configs: 3e-4; 1e-3 here, rank 8, α 16).
 */
const lora = { ...tilt, lora: 8, lr: 1e-3, promptsPerIteration: 8 } as const

export const byom = Experiment.define({
  name: "byom",
  doc: "LoRA flow-grpo on tilt (7s) on the imported PyTorch U-Net fixture and on etaflow's arch=unet base",
  budget:
    "6 runs × 40 iterations (~5 s each) + 5 evaluations, ~25 min; a first run per seed pretrains the U-Net (~45 min)",
  seeds: 3,
  iterations: 40,
  evaluate: { steps: [10], every: 10 },
  arms: [
    Experiment.arm("lora-pytorch-unet", flowGrpo, { ...lora, base: "test/fixtures/models/tiny-unet.onnx" }),
    Experiment.arm("lora-etaflow-unet", flowGrpo, { ...lora, arch: "unet" })
  ],
  claims: ["lora-pytorch-unet", "lora-etaflow-unet"].map((arm) => ({
    name: `${arm} raises the ODE reward over the base`,
    metric: "eval.improvement.s10",
    arm,
    over: "training" as const,
    direction: ">" as const
  }))
})

export const experiments = [etaSweep, fewStep, precise, adjointExperiment, overoptimisation, forwardProcess, byom]

export const findExperiment = (name: string) => experiments.find((e) => e.name === name)
