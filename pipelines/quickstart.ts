/**
 * `etaflow run quickstart`: Flow-GRPO on MNIST with the classifier reward, from the cached
 * pretrained base and reward classifier (trained first when the cache is empty), without the KL
 * term, ending with the ODE reward's improvement over the base model and the
 * SDE − ODE gap, with standard errors. (SDPO, the quickstart the brief names, is `etaflow run
 * sdpo`: with 10 pairs per iteration its gains at this budget are about 3–4 standard errors and
 * noisy, against Flow-GRPO's steady ones, so the first run a user sees is Flow-GRPO's.)
 */
import { Setting } from "../schemas/settings.ts"
import { flowGrpo } from "./flow-grpo.ts"

export const quickstart: typeof flowGrpo = {
  ...flowGrpo,
  name: "quickstart",
  doc: "start here: Flow-GRPO on MNIST with the classifier reward (pretrains base and classifier if needed)",
  settings: {
    ...flowGrpo.settings,
    beta: Setting.number(0, "KL coefficient to the base model (0: off)", { min: 0 })
  }
}
