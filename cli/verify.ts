/**
 * `etaflow verify <run-dir | experiment-dir> [--json]`: every file a run's commits recorded, checked
 * against its SHA-256; missing files; files present but unrecorded; what an interrupted commit left.
 * Exit 0 when nothing recorded is damaged, 1 when something is, 2 when the folder is neither kind.
 */
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as fs from "node:fs"
import * as path from "node:path"
import { StoreError, UsageError } from "../kernel/errors.ts"
import { type VerifyReport, verifyRun } from "../kernel/integrity.ts"

/** The run folders of `dir`: itself when it is one, else every run folder below it (an experiment's arms × seeds). */
const runFolders = (dir: string): Array<string> => {
  if (fs.existsSync(path.join(dir, "manifest.json"))) return [dir]
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return []
  return fs.readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith("."))
    .flatMap((e) => runFolders(path.join(dir, e.name)))
    .sort()
}

const describeReport = (r: VerifyReport): string => {
  const status = r.damaged.length > 0
    ? `${r.damaged.length} damaged`
    : r.legacy
    ? "no hashes recorded (written before etaflow recorded them): nothing to check"
    : "clean"
  return [
    `${r.dir}: ${r.iterations} iterations committed, ${r.checked} recorded files checked — ${status}`,
    ...r.damaged.map((d) => `  damaged      ${d.problem}`),
    ...r.unrecorded.map((f) => `  unrecorded   ${f} (no commit recorded it)`),
    ...r.uncommitted.map((f) => `  uncommitted  ${f} (left by an interrupted commit; --resume removes it)`)
  ].join("\n")
}

export const verify = (dir: string, json: boolean) =>
  Effect.gen(function*() {
    const runs = runFolders(dir)
    if (runs.length === 0) {
      return yield* new UsageError({
        message: `verify: ${dir} is neither a run folder nor holds any (no manifest.json)`
      })
    }
    const reports = runs.map(verifyRun)
    yield* Console.log(json ? JSON.stringify(reports, null, 2) : reports.map(describeReport).join("\n"))
    const damaged = reports.reduce((n, r) => n + r.damaged.length, 0)
    if (damaged > 0) {
      return yield* new StoreError({
        file: dir,
        message: `verify: ${damaged} damaged file${damaged === 1 ? "" : "s"} in ${dir}`
      })
    }
  })

export const verifyCommand = Command.make(
  "verify",
  {
    dir: Argument.String("dir").pipe(Argument.withDescription("a run folder, or an experiment folder of runs")),
    json: Flag.Boolean("json").pipe(Flag.withDescription("one JSON report per run folder"), Flag.withDefault(false))
  },
  ({ dir, json }) => verify(dir, json)
).pipe(Command.withDescription("Check every file a run's commits recorded against its SHA-256 (exit 1 when damaged)"))
