/**
 * The seeds' own questions as experiments with computed verdicts (docs/design.md, "Experiments").
 * Budgets are for this project's 2-core machine with the models cached. The base model, reward
 * classifier and judge are cached per run seed, so a first run of each seed also pretrains them
 * (~4 min per seed and process). Each claim is judged at the last evaluation, at 10 ODE steps unless
 * it says otherwise, from 3 seeds.
 */
import { adjointMatching } from "../pipelines/adjoint-matching.ts"
import { ddpo } from "../pipelines/ddpo.ts"
import { deterministicAm } from "../pipelines/deterministic-am.ts"
import { flowGrpo } from "../pipelines/flow-grpo.ts"
import { samplerCheck } from "../pipelines/sampler-check.ts"
import { sdpo } from "../pipelines/sdpo.ts"
import { Experiment } from "./experiment.ts"

/** Seed 000 (Sheng et al.): more stochasticity, larger ODE improvement; the SDE − ODE gap narrows. */
export const etaSweep = Experiment.define({
  name: "eta-sweep",
  doc: "ddpo with gDDIM at λ = η ∈ {1.0, 1.2, 1.5} on MNIST: ODE improvement and SDE − ODE gap over training",
  budget: "9 runs × 15 iterations, ~2.5 min",
  seeds: 3,
  iterations: 15,
  evaluate: { steps: [10], every: 5 },
  arms: [1, 1.2, 1.5].map((eta) => Experiment.arm(`eta-${eta.toFixed(1)}`, ddpo, { sampler: "gddim", eta })),
  claims: [
    {
      name: "more noise, larger ODE gain",
      metric: "eval.improvement.s10",
      arm: "eta-1.5",
      than: "eta-1.0",
      direction: ">"
    },
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
  doc: "sdpo vs ddpo trained at 10 steps, evaluated at 1, 2, 4, 8, 16 ODE steps",
  budget: "6 runs × 12 iterations (ddpo ~7 s, sdpo ~24 s of compute each) + evaluation, ~2.5 min",
  seeds: 3,
  iterations: 12,
  evaluate: { steps: [1, 2, 4, 8, 16], every: 6 },
  arms: [Experiment.arm("ddpo", ddpo), Experiment.arm("sdpo", sdpo)],
  claims: [1, 2, 4].map((s) => ({
    name: `SDPO gains more at ${s} step${s > 1 ? "s" : ""}`,
    metric: `eval.improvement.s${s}`,
    arm: "sdpo",
    than: "ddpo",
    direction: ">" as const
  }))
})

/**
 * Seed 004 (Precise): an SDE-consistent sampler learns faster than the Flow-GRPO SDE, CPS and DanceGRPO's.
 * All four train in the same pipeline, so an iteration costs the same and experiment.html's curves
 * against compute seconds compare them per second. The double-ring sampler table (the exact outer-ring
 * mass of every sampler at N = 6, 10, 20, 50) is the second part, as its own arm.
 */
export const precise = Experiment.define({
  name: "precise",
  doc: "flow-grpo training with the precise, flow-grpo, cps and dance-grpo samplers; the double-ring sampler table",
  budget: "12 RL runs × 15 iterations (~9 s of compute each) + 3 sampler tables (~2 min each), ~8 min",
  seeds: 3,
  iterations: 15,
  evaluate: { steps: [10], every: 5 },
  arms: [
    Experiment.arm("precise", flowGrpo, { sampler: "precise", noiseLevel: 1.5 }),
    Experiment.arm("flow-grpo", flowGrpo, { sampler: "flow-grpo", noiseLevel: 0.7 }),
    Experiment.arm("cps", flowGrpo, { sampler: "cps", noiseLevel: 0.5 }),
    Experiment.arm("dance-grpo", flowGrpo, { sampler: "dance-grpo", noiseLevel: 0.3 }),
    Experiment.arm("double-ring-table", samplerCheck, { sampler: "all" })
  ],
  claims: ["flow-grpo", "cps", "dance-grpo"].map((other) => ({
    name: `Precise beats ${other}`,
    metric: "eval.improvement.s10",
    arm: "precise",
    than: other,
    direction: ">" as const
  }))
})

/** Seed 002: deterministic adjoint matching, truncated, aligns with better diversity at less compute. */
export const adjointExperiment = Experiment.define({
  name: "adjoint",
  doc: "adjoint-matching, deterministic-am with K = N and K = 3, and flow-grpo on MNIST",
  budget: "12 runs × 20 iterations (~7–12 s of compute each) + evaluation, ~2.5 min",
  seeds: 3,
  iterations: 20,
  evaluate: { steps: [10], every: 10 },
  arms: [
    Experiment.arm("flow-grpo", flowGrpo),
    Experiment.arm("adjoint-matching", adjointMatching),
    Experiment.arm("dam-full", deterministicAm, { adjointSteps: 0 }),
    Experiment.arm("dam-K3", deterministicAm, { adjointSteps: 3 })
  ],
  claims: [
    {
      name: "adjoint matching aligns better",
      metric: "eval.improvement.s10",
      arm: "adjoint-matching",
      than: "flow-grpo",
      direction: ">"
    },
    {
      name: "truncated AM keeps diversity",
      metric: "eval.diversity.s10",
      arm: "dam-K3",
      than: "flow-grpo",
      direction: ">"
    },
    {
      name: "truncation costs no alignment",
      metric: "eval.improvement.s10",
      arm: "dam-K3",
      than: "dam-full",
      direction: ">"
    }
  ]
})

export const experiments = [etaSweep, fewStep, precise, adjointExperiment]

export const findExperiment = (name: string) => experiments.find((e) => e.name === name)
