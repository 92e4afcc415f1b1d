/**
 * The files an experiment folder's comparison is read from, rebuilt from its runs at any time
 * (`etaflow experiment report`): the numbers (experiments/compare.ts) and their page (experiments/html.ts).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { writeFileAtomic } from "../store/atomic.ts"
import { toParquet } from "../store/parquet.ts"
import {
  collect,
  comparisonMarkdown,
  comparisonRows,
  comparisonTable,
  findingsMarkdown,
  readRecord
} from "./compare.ts"
import { curveCharts, experimentHtml } from "./html.ts"

/**
 * Writes comparison.parquet, comparison.md, findings.md, experiment.html and the learning curves as
 * `curves/*.svg` into the folder; returns their paths.
 */
export const writeComparison = (out: string): Array<string> => {
  const record = readRecord(out)
  const values = collect(out, record)
  const files = {
    "comparison.parquet": toParquet(comparisonTable(comparisonRows(values))),
    "comparison.md": comparisonMarkdown(record, values),
    "findings.md": findingsMarkdown(record, values),
    "experiment.html": experimentHtml(record, values)
  }
  for (const [name, data] of Object.entries(files)) writeFileAtomic(path.join(out, name), data)
  // The curves as files of their own too, for documents that cite them (docs/experiments.md).
  const charts = curveCharts(values)
  fs.mkdirSync(path.join(out, "curves"), { recursive: true })
  for (const c of charts) writeFileAtomic(path.join(out, "curves", c.file), c.svg)
  return [...Object.keys(files), ...charts.map((c) => path.join("curves", c.file))].map((f) => path.join(out, f))
}
