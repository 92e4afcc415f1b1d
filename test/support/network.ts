/** A small velocity network's output at given rows and one time, from the inference session (not a loss graph). */
import { rectifiedFlow } from "../../diffusion/process.ts"
import type { ParamValues } from "../../engine/params.ts"
import { networkPolicy } from "../../models/network-policy.ts"
import type { VelocityNetConfig } from "../../models/velocity-net.ts"

export const forwardAt = async (
  net: VelocityNetConfig,
  params: ParamValues,
  x: Float32Array,
  rows: number,
  t: number
): Promise<Float32Array> => {
  const policy = await networkPolicy({
    net,
    params,
    process: rectifiedFlow,
    parameterization: "velocity",
    shape: [net.dim],
    cfg: 1,
    threads: 1
  })
  const f = await policy.predict(x, rows, t)
  await policy.release()
  return f
}
