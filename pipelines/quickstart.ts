/**
 * `etaflow run quickstart`: SDPO on MNIST's `tilt` task — the pretrained unconditional VP base tilted
 * toward the digit 7 with the reward log p(7 | x) (docs/algorithms.md §13), the sdpo pipeline with its
 * defaults otherwise (512 pairs per iteration from the same initial noise, dense rewards,
 * per-step-prompt tracker, step-shuffled reward-difference updates). The base's ODE samples draw a 7
 * about 5 % of the time, so there is room to show: it ends with the ODE reward's improvement over the
 * base, the normalised reward (0 at the base, 1 at the real 7s' reward), the judge's hit rate and the
 * SDE − ODE gap, with standard errors. Base, reward classifier and judge are trained first when the
 * cache is empty.
 */
import { TASKS } from "../nodes/rl/config.ts"
import { Setting } from "../schemas/settings.ts"
import { sdpo } from "./sdpo.ts"

export const quickstart: typeof sdpo = {
  ...sdpo,
  name: "quickstart",
  doc: "start here: SDPO tilts the MNIST base toward 7s (pretrains base, classifier and judge if needed)",
  settings: {
    ...sdpo.settings,
    task: Setting.literal(
      TASKS,
      "tilt",
      "MNIST task: tilt (the unconditional base toward `target`, the quickstart's) or prompted (the prompted digit)"
    )
  }
}
