/**
 * Networks built on the engine: the velocity / ε MLP of the flow and diffusion models, and the
 * classifier used as a reward model. Each is a parameter list plus a forward function on graph
 * tensors, so the same forward serves training graphs, rollout graphs and exported models.
 */
import type { Graph, Tensor } from "../engine/graph.ts"
import * as op from "../engine/ops.ts"
import type { ParamSpec } from "../engine/params.ts"
import { linear, linearSpecs, timeFeatures } from "./layers.ts"

/**
 * A velocity / ε network as the pipelines use it: its trainable parameters and its forward pass
 * f(x, t, c) on flat latents x [B, dim], t [B] in model time ([0, 1]), c [B] class indices.
 */
export interface VelocityNet<C = unknown> {
  readonly specs: ReadonlyArray<ParamSpec>
  readonly forward: (g: Graph, p: Record<string, Tensor>, x: Tensor, t: Tensor, c?: Tensor) => Tensor
  readonly guided: (g: Graph, p: Record<string, Tensor>, x: Tensor, t: Tensor, c: Tensor, w: Tensor | number) => Tensor
  /**
   * The weights a LoRA adapter can be put on (those of a matrix product or convolution), and which axis
   * of each is its output side (docs/byom.md): the adapter's zero factor is the output side's, as peft's B.
   */
  readonly adaptable: Readonly<Record<string, { readonly outAxis: 0 | 1 }>>
  readonly config: C
}

/** Classifier-free guidance f_u + w (f_c − f_u), with f_u at the null condition (index `classes`). */
export const guidance = (
  forward: VelocityNet["forward"],
  classes: number
): VelocityNet["guided"] =>
(g, p, x, t, c, w) => {
  const fc = forward(g, p, x, t, c)
  const fu = forward(g, p, x, t, op.expandAs(g.constant(BigInt64Array.of(BigInt(classes)), [1], "int64"), c))
  return op.add(fu, op.mul(op.sub(fc, fu), w))
}

export interface MlpNetConfig {
  /** Elements of a latent (784 for MNIST, 2 for toys). */
  readonly dim: number
  readonly hidden: number
  readonly blocks: number
  /** Sinusoidal time features (even). */
  readonly timeFeatures: number
  /** Condition classes (0: unconditional); index `classes` is the learned null condition of CFG. */
  readonly classes: number
}

/**
 * MLP with sinusoidal time features and a class embedding: e = W_t φ(1000 t) + E[c], h = W_in x,
 * then pre-activation residual blocks h += W₂ SiLU(W₁ SiLU(h + e)), output W_out SiLU(h) + s(t) ⊙ x
 * (zero-initialised so training starts from f = 0). Time enters as 1000·t, the flow models' convention (§1.3).
 */
export const mlpNet = (cfg: MlpNetConfig): VelocityNet<MlpNetConfig> => {
  const { dim, hidden: H, blocks, timeFeatures: F, classes } = cfg
  const specs: Array<ParamSpec> = [
    ...linearSpecs("in", dim, H),
    ...linearSpecs("time", F, H),
    ...(classes > 0
      ? [{ name: "class.embedding", shape: [classes + 1, H], init: { std: 1 } } satisfies ParamSpec]
      : []),
    ...Array.from(
      { length: blocks },
      (_, i) => [...linearSpecs(`block${i}.fc1`, H, H), ...linearSpecs(`block${i}.fc2`, H, H, true)]
    ).flat(),
    ...linearSpecs("out", H, dim, true),
    { name: "skip.w", shape: [F, dim], init: "zeros" },
    { name: "skip.b", shape: [dim], init: "zeros" }
  ]
  /** f(x, t, c): x [B, dim], t [B], c [B] int64 class indices (classes = null condition). */
  const forward = (g: Graph, p: Record<string, Tensor>, x: Tensor, t: Tensor, c?: Tensor): Tensor => {
    const phi = timeFeatures(g, t, F)
    // e carries time and condition; every block sees it, so conditioning is not washed out with depth.
    let e = linear(p, "time", phi)
    if (classes > 0) {
      if (c === undefined) throw new Error("velocityNet: a conditional network needs class indices")
      e = op.add(e, op.gather(p["class.embedding"], c))
    }
    let h = linear(p, "in", x)
    for (let i = 0; i < blocks; i++) {
      h = op.add(h, linear(p, `block${i}.fc2`, op.silu(linear(p, `block${i}.fc1`, op.silu(op.add(h, e))))))
    }
    // A per-pixel, time-dependent skip s(t) ⊙ x: the noise part of the target (v = (x − x0)/σ for
    // flows) is linear in x, which the bottleneck of width H could not pass through for d > H.
    return op.add(linear(p, "out", op.silu(h)), op.mul(x, linear(p, "skip", phi)))
  }
  // Weights are [fan-in, fan-out] (x·W): the output side is axis 1.
  const adaptable = Object.fromEntries(
    specs.filter((s) => s.name.endsWith(".w") && s.shape.length === 2).map((s) => [s.name, { outAxis: 1 as const }])
  )
  return { specs, forward, guided: guidance(forward, classes), adaptable, config: cfg }
}

export interface ClassifierConfig {
  readonly dim: number
  readonly hidden: number
  readonly layers: number
  readonly classes: number
}

/** MLP classifier with SiLU; returns log-probabilities of the classes. */
export const classifierNet = (cfg: ClassifierConfig) => {
  const widths = [cfg.dim, ...Array.from({ length: cfg.layers }, () => cfg.hidden)]
  const specs: Array<ParamSpec> = [
    ...widths.slice(1).flatMap((w, i) => linearSpecs(`fc${i}`, widths[i], w)),
    ...linearSpecs("head", cfg.hidden, cfg.classes)
  ]
  /** The last hidden layer's activations: the feature space of the Fréchet distance and diversity. */
  const features = (p: Record<string, Tensor>, x: Tensor): Tensor => {
    let h = x
    for (let i = 0; i < cfg.layers; i++) h = op.silu(linear(p, `fc${i}`, h))
    return h
  }
  const forward = (p: Record<string, Tensor>, x: Tensor): Tensor => op.logSoftmax(linear(p, "head", features(p, x)), -1)
  return { specs, forward, features, config: cfg }
}
