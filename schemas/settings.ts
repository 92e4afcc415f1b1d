/**
 * Pipeline settings: each one is an Effect Schema with a default, a doc line and a description of
 * what is allowed. A pipeline's settings give its config Schema, its `--help` text, and the
 * validation of `--set key=value`, config files and replay overrides, all from one declaration.
 */
import { Exit, Schema } from "effect"

export interface Setting<A> {
  readonly schema: Schema.Codec<A, unknown>
  readonly default: A
  /** One line: what the setting controls. */
  readonly doc: string
  /** What values are allowed, for error messages and help ("an integer ≥ 1"). */
  readonly allowed: string
  /** Turns a `--set` string into the value to validate. */
  readonly fromString: (raw: string) => unknown
}

export type Settings = Readonly<Record<string, Setting<any>>>
export type ConfigOf<S extends Settings> = { readonly [K in keyof S]: S[K]["default"] }

/** The config of every setting at its default. */
export const defaultsOf = <S extends Settings>(settings: S): ConfigOf<S> =>
  Object.fromEntries(Object.entries(settings).map(([k, s]) => [k, s.default])) as ConfigOf<S>

/** The settings without the named ones (a pipeline family that has no use for them). */
export const omitSettings = <S extends Settings, K extends keyof S & string>(
  settings: S,
  names: ReadonlyArray<K>
): Omit<S, K> => Object.fromEntries(Object.entries(settings).filter(([k]) => !names.includes(k as K))) as Omit<S, K>

const asNumber = (raw: string): unknown => (raw.trim() !== "" && Number.isFinite(Number(raw)) ? Number(raw) : raw)

const bounds = (min?: number, max?: number) =>
  min !== undefined && max !== undefined
    ? ` in [${min}, ${max}]`
    : min !== undefined
    ? ` ≥ ${min}`
    : max !== undefined
    ? ` ≤ ${max}`
    : ""

const numberSchema = (base: Schema.Codec<number, unknown>, min?: number, max?: number) => {
  let s = base
  if (min !== undefined) s = s.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(min))) as never
  if (max !== undefined) s = s.pipe(Schema.check(Schema.isLessThanOrEqualTo(max))) as never
  return s
}

export const Setting = {
  int: (def: number, doc: string, opts: { min?: number; max?: number } = {}): Setting<number> => ({
    schema: numberSchema(Schema.Int as never, opts.min, opts.max),
    default: def,
    doc,
    allowed: `an integer${bounds(opts.min, opts.max)}`,
    fromString: asNumber
  }),
  number: (def: number, doc: string, opts: { min?: number; max?: number } = {}): Setting<number> => ({
    schema: numberSchema(Schema.Finite as never, opts.min, opts.max),
    default: def,
    doc,
    allowed: `a number${bounds(opts.min, opts.max)}`,
    fromString: asNumber
  }),
  literal: <const L extends ReadonlyArray<string>>(choices: L, def: L[number], doc: string): Setting<L[number]> => ({
    schema: Schema.Literals(choices) as never,
    default: def,
    doc,
    allowed: `one of ${choices.join(", ")}`,
    fromString: (raw) => raw
  }),
  boolean: (def: boolean, doc: string): Setting<boolean> => ({
    schema: Schema.Boolean as never,
    default: def,
    doc,
    allowed: "true or false",
    fromString: (raw) => (raw === "true" ? true : raw === "false" ? false : raw)
  }),
  string: (def: string, doc: string): Setting<string> => ({
    schema: Schema.String as never,
    default: def,
    doc,
    allowed: "a string",
    fromString: (raw) => raw
  }),
  numberList: (
    def: ReadonlyArray<number>,
    doc: string,
    opts: { min?: number } = {}
  ): Setting<ReadonlyArray<number>> => ({
    schema: Schema.Array(numberSchema(Schema.Finite as never, opts.min)) as never,
    default: def,
    doc,
    allowed: `a comma-separated list of numbers${bounds(opts.min)}`,
    fromString: (raw) => raw.split(",").map((p) => asNumber(p.trim()))
  }),
  intList: (def: ReadonlyArray<number>, doc: string, opts: { min?: number } = {}): Setting<ReadonlyArray<number>> => ({
    schema: Schema.Array(numberSchema(Schema.Int as never, opts.min)) as never,
    default: def,
    doc,
    allowed: `a comma-separated list of integers${bounds(opts.min)}`,
    fromString: (raw) => raw.split(",").map((p) => asNumber(p.trim()))
  })
}

export interface SettingIssue {
  readonly key: string
  readonly given: unknown
  readonly problem: string
}

/** Renders issues as one line each: which field, what was given, what is allowed. */
export const formatIssues = (pipeline: string, issues: ReadonlyArray<SettingIssue>): string =>
  issues.map((i) => `pipeline ${pipeline}: setting "${i.key}" ${i.problem} (given: ${JSON.stringify(i.given)})`).join(
    "\n"
  )

/**
 * Resolves a config: defaults, then `base` (a config file or a stored run's config), then
 * `overrides` (`--set` strings). Unknown keys and invalid values are all reported, not just the first.
 */
export const resolveSettings = <S extends Settings>(
  settings: S,
  base: Readonly<Record<string, unknown>>,
  overrides: Readonly<Record<string, string>>
): Exit.Exit<ConfigOf<S>, ReadonlyArray<SettingIssue>> => {
  const issues: Array<SettingIssue> = []
  const out: Record<string, unknown> = {}
  const known = Object.keys(settings)
  for (const key of [...Object.keys(base), ...Object.keys(overrides)]) {
    if (!(key in settings)) {
      issues.push({
        key,
        given: key in overrides ? overrides[key] : base[key],
        problem: `is unknown; allowed settings: ${known.join(", ")}`
      })
    }
  }
  for (const [key, setting] of Object.entries(settings)) {
    const given = key in overrides ? setting.fromString(overrides[key]) : key in base ? base[key] : setting.default
    const decoded = Schema.decodeUnknownExit(setting.schema)(given)
    if (Exit.isSuccess(decoded)) out[key] = decoded.value
    else issues.push({ key, given: key in overrides ? overrides[key] : given, problem: `must be ${setting.allowed}` })
  }
  return issues.length > 0 ? Exit.fail(issues) : Exit.succeed(out as ConfigOf<S>)
}

/** The help text of a settings block: one line per setting with its default and what is allowed. */
export const settingsHelp = (settings: Settings): string => {
  const rows = Object.entries(settings).map(([key, s]) => [key, JSON.stringify(s.default), s.doc, s.allowed])
  const w0 = Math.max(...rows.map((r) => r[0].length), 3)
  const w1 = Math.max(...rows.map((r) => r[1].length), 7)
  return rows.map(([k, d, doc, allowed]) => `  ${k.padEnd(w0)}  ${d.padEnd(w1)}  ${doc} (${allowed})`).join("\n")
}
