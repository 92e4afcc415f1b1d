/**
 * `etaflow run quickstart`: Flow-GRPO on MNIST with the classifier reward, from the cached
 * pretrained base and reward classifier (trained first when the cache is empty), without the KL
 * term, ending with the ODE reward's improvement over the base model and the
 * SDE − ODE gap, with standard errors. (SDPO is the intended quickstart; it lands with the
 * dense-reward and paired-update nodes.)
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
