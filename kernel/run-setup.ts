/**
 * Setting a run up: its options, the resolved config and folder (nothing is written when the
 * settings are bad), the folder's lock and manifest, and the state entering the first iteration.
 */
import { Cause, Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { type Manifest, RUN_FORMAT } from "../schemas/manifest.ts"
import { messageOf } from "../schemas/message.ts"
import { type ConfigOf, formatIssues, resolveSettings } from "../schemas/settings.ts"
import { writeFileAtomic } from "../store/atomic.ts"
import type { StoredFiles } from "../store/integrity.ts"
import { asStoreError, StoreError, UsageError } from "./errors.ts"
import { readCheckpoint } from "./integrity.ts"
import type { AnyPipeline } from "./pipeline.ts"
import type { ProgressMode } from "./progress.ts"
import type { ReplayPlan } from "./replay-plan.ts"
import {
  acquireLock,
  cleanUncommitted,
  iterFile,
  type LockOptions,
  manifestText,
  now,
  readManifest,
  timestamp
} from "./run-folder.ts"
import { packageVersions, type VersionChange, versionChanges } from "./versions.ts"

const describe = (e: unknown) => messageOf(e)

export interface RunOptions {
  /** Settings from a config file (or a stored run), before `set`. */
  readonly config?: Readonly<Record<string, unknown>>
  /** `--set key=value` overrides, as strings. */
  readonly set?: Readonly<Record<string, string>>
  readonly seed?: number
  /** The run directory itself; default `runs/<pipeline>-<timestamp>`. */
  readonly out?: string
  /** Continue the run in this directory after its last complete iteration. */
  readonly resume?: string
  /**
   * Re-run a stored run from an entry onward: entries upstream of `from` are not recomputed, their
   * outputs are restored from the stored run (`.restoredBy`) and their metrics copied. The stored
   * config and seed are used, changed by `set`.
   */
  readonly replay?: { readonly source: string; readonly from: string }
  readonly progress?: ProgressMode
  /** How the run folder's lock treats one left by another host (cluster runners hold a lease). */
  readonly lock?: LockOptions
}

export interface Prepared<P extends AnyPipeline> {
  readonly dir: string
  readonly config: ConfigOf<P["settings"]>
  readonly seed: number
  readonly manifest: Manifest | undefined
}

const prepareResume = <P extends AnyPipeline>(pipeline: P, options: RunOptions & { resume: string }): Prepared<P> => {
  if (options.set !== undefined && Object.keys(options.set).length > 0 || options.config !== undefined) {
    throw new UsageError({ message: "--resume continues the stored config; --set and --config cannot change it" })
  }
  const manifest = readManifest(options.resume)
  if (manifest.pipeline !== pipeline.name) {
    throw new UsageError({
      message: `${options.resume} is a run of pipeline ${manifest.pipeline}, not ${pipeline.name}`
    })
  }
  const config = resolveSettings(pipeline.settings, manifest.config, {})
  if (Exit.isFailure(config)) {
    throw new UsageError({ message: `${options.resume}/manifest.json: stored config no longer valid` })
  }
  return { dir: options.resume, config: config.value as ConfigOf<P["settings"]>, seed: manifest.seed, manifest }
}

/** Resolves the run's config and folder; nothing is written when the settings are bad. */
export const prepareRun = <P extends AnyPipeline>(pipeline: P, options: RunOptions) =>
  Effect.try({
    try: (): Prepared<P> => {
      if (options.resume !== undefined) return prepareResume(pipeline, { ...options, resume: options.resume })
      const source = options.replay === undefined ? undefined : readManifest(options.replay.source)
      if (source !== undefined && source.pipeline !== pipeline.name) {
        throw new UsageError({
          message: `${options.replay!.source} is a run of pipeline ${source.pipeline}, not ${pipeline.name}`
        })
      }
      const resolved = resolveSettings(pipeline.settings, source?.config ?? options.config ?? {}, options.set ?? {})
      if (Exit.isFailure(resolved)) {
        const issues = Cause.findErrorOption(resolved.cause)
        throw new UsageError({ message: formatIssues(pipeline.name, issues._tag === "Some" ? issues.value : []) })
      }
      const seed = source?.seed ?? options.seed ?? 0
      if (!Number.isSafeInteger(seed) || seed < 0) {
        throw new UsageError({ message: `--seed must be a non-negative integer (given: ${seed})` })
      }
      const dir = options.out ??
        path.join("runs", `${pipeline.name}-${source === undefined ? "" : "replay-"}${timestamp()}`)
      if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
        throw new UsageError({
          message: `${dir} already exists and is not empty; choose another --out or continue it with --resume ${dir}`
        })
      }
      const problems = pipeline.check(resolved.value)
      if (problems.length > 0) {
        throw new UsageError({ message: problems.map((p) => `pipeline ${pipeline.name}: ${p}`).join("\n") })
      }
      return { dir, config: resolved.value as ConfigOf<P["settings"]>, seed, manifest: undefined }
    },
    catch: (e) => (e instanceof UsageError ? e : new UsageError({ message: describe(e) }))
  })

/** The versions a run's latest iterations were computed with: those it was created with, then each recorded change. */
export const latestVersions = (manifest: Manifest): Record<string, string> => {
  const versions = { ...manifest.versions }
  for (const change of manifest.version_changes ?? []) versions[change.package] = change.to
  return versions
}

/**
 * Creates or re-opens the run folder: its lock, and the manifest marked running. A resume under other
 * versions than the run's last iterations records each change (the caller warns: `changed`).
 */
export const openFolder = <P extends AnyPipeline>(
  pipeline: P,
  prep: Prepared<P>,
  options: RunOptions,
  replay: ReplayPlan | undefined
) => {
  const { dir, config, seed } = prep
  fs.mkdirSync(dir, { recursive: true })
  const release = acquireLock(dir, options.lock)
  let manifest: Manifest
  let changed: Array<VersionChange> = []
  if (prep.manifest !== undefined) {
    changed = versionChanges(latestVersions(prep.manifest))
    const at = now()
    const iteration = prep.manifest.iterations_complete
    manifest = {
      ...prep.manifest,
      status: "running",
      updated_at: at,
      resumed_at: [...(prep.manifest.resumed_at ?? []), at],
      ...(changed.length === 0 ? {} : {
        version_changes: [...(prep.manifest.version_changes ?? []), ...changed.map((c) => ({ at, iteration, ...c }))]
      })
    }
    cleanUncommitted(dir, manifest.iterations_complete, path.join(dir, "metrics.jsonl"))
  } else {
    manifest = {
      format: RUN_FORMAT,
      pipeline: pipeline.name,
      config: config as Record<string, unknown>,
      seed,
      versions: packageVersions(),
      created_at: now(),
      updated_at: now(),
      status: "running",
      iterations: pipeline.iterations(config),
      iterations_complete: 0,
      ...(replay === undefined
        ? {}
        : { replay_of: { source: replay.source, from: replay.from, overrides: { ...(options.set ?? {}) } } })
    }
  }
  writeFileAtomic(path.join(dir, "manifest.json"), manifestText(manifest))
  return { release, manifest, changed }
}

/**
 * The state entering the first iteration to run: the initial state, or the last checkpoint's, read
 * through `files` so that a damaged checkpoint is refused before anything decodes it.
 */
export const loadState = <P extends AnyPipeline>(
  pipeline: P,
  files: StoredFiles,
  config: ConfigOf<P["settings"]>,
  start: number
) => {
  const state = pipeline.state
  if (state === undefined) return Effect.succeed(undefined)
  if (start === 0) return state.initial(config) as Effect.Effect<unknown>
  const ckpt = path.join(files.root, "checkpoints", iterFile(start - 1))
  if (!fs.existsSync(ckpt) && files.check(ckpt).length === 0) {
    const missing = `${ckpt} is missing: the run did not keep the state after iteration ${
      start - 1
    } (its retention, keep=minimal?)`
    return Effect.fail(new UsageError({ message: missing }))
  }
  return Effect.try({
    try: () => state.decode(readCheckpoint(files, start - 1), config),
    catch: (e) => (e instanceof StoreError ? e : asStoreError(ckpt)(e))
  })
}
