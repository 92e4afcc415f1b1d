/**
 * What a run folder keeps (`keep`): all; default (weights of every iteration, the last iteration's
 * trajectories, AdamW moments in the newest checkpoint; replay regenerates the rest); minimal (metrics,
 * evaluation, report, best and last weights).
 */
export const KEEP = ["all", "default", "minimal"] as const
export type Keep = (typeof KEEP)[number]
