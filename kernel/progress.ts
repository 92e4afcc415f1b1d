/**
 * Progress of a run on stderr (stdout is kept for the run directory): a live bar on a TTY, plain
 * lines otherwise (node, iteration, elapsed, rate), nothing when silenced.
 */
export type ProgressMode = "auto" | "bar" | "lines" | "none"

export interface Progress {
  readonly nodeDone: (entry: string, iteration: number, seconds: number) => void
  readonly iterationDone: (iteration: number, metrics: Readonly<Record<string, number>>) => void
  readonly finish: () => void
  /** A line of news from inside a node (e.g. training steps) or the run's closing summary. */
  readonly note: (line: string) => void
}

const fmt = (v: number) =>
  Number.isInteger(v)
    ? String(v)
    : (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toPrecision(4))

/** RL runs show reward, improvement and gap first; other pipelines their first metrics. */
const PREFERRED = [/^reward_mean$/, /^eval\.improvement\.s\d+$/, /^eval\.gap\.s\d+$/]

/** Up to three metrics shown beside the bar. */
const headline = (metrics: Readonly<Record<string, number>>) => {
  const keys = Object.keys(metrics)
  const preferred = PREFERRED.map((re) => keys.filter((k) => re.test(k)).at(-1)).filter((k): k is string =>
    k !== undefined
  )
  const shown = preferred.length > 0 ? preferred : keys.slice(0, 3)
  return shown.map((k) => `${k}=${fmt(metrics[k])}`).join(" ")
}

export const makeProgress = (
  mode: ProgressMode,
  pipeline: string,
  total: number,
  first: number,
  write: (s: string) => void = (s) => process.stderr.write(s)
): Progress => {
  const resolved = mode === "auto" ? (process.stderr.isTTY ? "bar" : "lines") : mode
  const start = performance.now()
  const elapsed = () => (performance.now() - start) / 1000
  const rate = (done: number) => (done - first) / Math.max(elapsed(), 1e-9)
  if (resolved === "none") return { nodeDone: () => {}, iterationDone: () => {}, finish: () => {}, note: () => {} }
  if (resolved === "lines") {
    return {
      nodeDone: (entry, iteration, seconds) =>
        write(
          `${pipeline} iter ${iteration + 1}/${total} node ${entry} ${seconds.toFixed(3)}s elapsed ${
            elapsed().toFixed(1)
          }s\n`
        ),
      iterationDone: (iteration, metrics) =>
        write(
          `${pipeline} iter ${iteration + 1}/${total} done elapsed ${elapsed().toFixed(1)}s rate ${
            rate(iteration + 1).toFixed(2)
          } it/s ${headline(metrics)}\n`
        ),
      finish: () => {},
      note: (line) => write(`${pipeline} ${line}\n`)
    }
  }
  let last = ""
  const draw = (done: number, node: string) => {
    const width = 24
    const filled = Math.round((width * done) / Math.max(total, 1))
    const bar = "█".repeat(filled) + "·".repeat(width - filled)
    const line = `${pipeline} [${bar}] ${done}/${total} ${node.padEnd(12)} ${elapsed().toFixed(1)}s ${
      rate(done).toFixed(2)
    } it/s ${last}`
    write(`\r${line.slice(0, (process.stderr.columns ?? 120) - 1)}\u001b[K`)
  }
  return {
    nodeDone: (entry, iteration) => draw(iteration, entry),
    iterationDone: (iteration, metrics) => {
      last = headline(metrics)
      draw(iteration + 1, "")
    },
    finish: () => write("\n"),
    note: (line) => write(`\r\u001b[K${pipeline} ${line}\n`)
  }
}
