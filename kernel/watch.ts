/**
 * Rules that end a run early (a pipeline's `stopWhen` setting), over the metrics the run logs: a run that
 * collapses stops at the evaluation that shows it instead of spending the rest of its budget. The rules know
 * metric names and values only, no domain:
 *   `NAME falls K`  NAME decreased at each of its last K logged values (K + 1 values, each below the one before);
 *   `NAME rises K`  the same, increasing (a distance to the target that grows);
 *   `NAME < X`, `NAME > X`  NAME's latest logged value crossed X.
 * Rules are separated by `;`; the first that holds is the reason recorded in the manifest.
 */
import type { MetricRow } from "../schemas/manifest.ts"

export type StopRule =
  | { readonly kind: "falls" | "rises"; readonly metric: string; readonly times: number }
  | { readonly kind: "below" | "above"; readonly metric: string; readonly value: number }

const RULE = /^([A-Za-z_][\w.\-]*)\s*(?:(falls|rises)\s+(\d+)|(<|>)\s*(\S+))$/

/** The rules of a `stopWhen` text ("" is none); throws with the rule that is not of a known form. */
export const parseStopRules = (text: string): Array<StopRule> =>
  text.split(";").map((r) => r.trim()).filter((r) => r !== "").map((rule) => {
    const m = RULE.exec(rule)
    const value = m?.[5] === undefined ? Number.NaN : Number(m[5])
    if (m === null || (m[2] === undefined && !Number.isFinite(value)) || (m[2] !== undefined && Number(m[3]) < 1)) {
      throw new Error(
        `"${rule}" is not a rule; expected "METRIC falls K", "METRIC rises K" (K ≥ 1), "METRIC < X" or ` +
          `"METRIC > X", ` +
          `separated by ";" (e.g. "eval.gold.s10 falls 3; eval.diversity_target.s10 < 0.5")`
      )
    }
    return m[2] !== undefined
      ? { kind: m[2] === "falls" ? "falls" : "rises", metric: m[1], times: Number(m[3]) }
      : { kind: m[4] === "<" ? "below" : "above", metric: m[1], value }
  })

/** Why the run should stop after the metrics logged so far, or undefined. */
export const stopReason = (
  rules: ReadonlyArray<StopRule>,
  rows: ReadonlyArray<MetricRow>
): string | undefined => {
  for (const rule of rules) {
    const series = rows.filter((r) => r.name === rule.metric)
    const last = series.at(-1)
    if (last === undefined) continue
    if ("times" in rule) {
      const tail = series.slice(-(rule.times + 1))
      const step = rule.kind === "falls" ? (a: number, b: number) => b < a : (a: number, b: number) => b > a
      if (tail.length === rule.times + 1 && tail.every((r, i) => i === 0 || step(tail[i - 1].value, r.value))) {
        const values = tail.map((r) => r.value.toPrecision(4)).join(" → ")
        return `${rule.metric} ${
          rule.kind === "falls" ? "fell" : "rose"
        } ${rule.times} times in a row (${values}, iterations ${tail.map((r) => r.iteration).join(", ")})`
      }
    } else if (rule.kind === "below" ? last.value < rule.value : last.value > rule.value) {
      return `${rule.metric} = ${last.value.toPrecision(4)} at iteration ${last.iteration}, ${
        rule.kind === "below" ? "below" : "above"
      } ${rule.value}`
    }
  }
  return undefined
}

/** The rules whose metric the run has not logged once by the end: a misspelt name never stops anything. */
export const unseenRules = (rules: ReadonlyArray<StopRule>, rows: ReadonlyArray<MetricRow>): Array<string> =>
  rules.filter((rule) => !rows.some((r) => r.name === rule.metric)).map((r) => r.metric)
