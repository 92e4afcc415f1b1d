/**
 * `etaflow run quickstart`: SDPO on MNIST with the classifier reward — the sdpo pipeline with its
 * defaults (512 pairs per iteration from the same initial noise, dense rewards, per-step-prompt
 * tracker, step-shuffled reward-difference updates), from the cached pretrained VP base model and
 * reward classifier (trained first when the cache is empty). It ends with the ODE reward's
 * improvement over the base model and the SDE − ODE gap, with standard errors.
 */
import { sdpo } from "./sdpo.ts"

export const quickstart: typeof sdpo = {
  ...sdpo,
  name: "quickstart",
  doc: "start here: SDPO on MNIST with the classifier reward (pretrains base and classifier if needed)"
}
