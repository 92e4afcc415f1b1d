/**
 * Small inline-SVG charts for the run report: lines with optional ±error bands, and 2-D scatter
 * plots. Hand-written because a report needs a few dozen elements per chart and must be a single
 * self-contained file; a plotting library would bring a renderer and a DOM for this.
 */
export interface Series {
  readonly name: string
  readonly x: ReadonlyArray<number>
  readonly y: ReadonlyArray<number>
  /** Standard errors drawn as a band around y. */
  readonly err?: ReadonlyArray<number>
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
const tick = (
  v: number
) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : Number(v.toPrecision(3)).toString())

/**
 * A chart title as centred lines that fit `width`: words wrapped greedily at ~7.5 px per character of 13 px
 * bold text (a long title drawn on one line ran past both edges of the chart and was cut off).
 */
const titleLines = (title: string, width: number): Array<string> => {
  const max = Math.max(12, Math.floor((width - 16) / 7.5))
  const lines: Array<string> = []
  for (const word of title.split(" ")) {
    const last = lines.at(-1)
    if (last !== undefined && last.length + 1 + word.length <= max) lines[lines.length - 1] = `${last} ${word}`
    else lines.push(word)
  }
  return lines
}

const titleText = (lines: ReadonlyArray<string>, width: number) =>
  `<text class="title" x="${width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${
    lines.map((l, i) => `<tspan x="${width / 2}" dy="${i === 0 ? 0 : 15}">${esc(l)}</tspan>`).join("")
  }</text>`

export const lineChart = (
  title: string,
  series: ReadonlyArray<Series>,
  xLabel = "iteration",
  width = 420,
  height = 240
): string => {
  const lines = titleLines(title, width)
  // Each wrapped line lowers the plot and makes the chart taller by the same amount.
  const extra = 15 * (lines.length - 1)
  height += extra
  const pad = { l: 56, r: 12, t: 26 + extra, b: 34 }
  const xs = series.flatMap((s) => s.x)
  const ys = series.flatMap((s) => s.y.flatMap((y, i) => [y - (s.err?.[i] ?? 0), y + (s.err?.[i] ?? 0)]))
  if (xs.length === 0) {
    return `<svg class="chart empty" width="${width}" height="${height}"><text x="10" y="20">${
      esc(title)
    }: no data</text></svg>`
  }
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) === Math.min(...xs) ? Math.min(...xs) + 1 : Math.max(...xs)]
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)]
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1]
  const X = (v: number) => pad.l + ((v - x0) / (x1 - x0)) * (width - pad.l - pad.r)
  const Y = (v: number) => height - pad.b - ((v - y0) / (y1 - y0)) * (height - pad.t - pad.b)
  const parts = [
    `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}">`,
    titleText(lines, width),
    `<line x1="${pad.l}" y1="${height - pad.b}" x2="${width - pad.r}" y2="${height - pad.b}" stroke="#444"/>`,
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${height - pad.b}" stroke="#444"/>`,
    ...[y0, (y0 + y1) / 2, y1].map((v) =>
      `<text x="${pad.l - 4}" y="${Y(v) + 4}" text-anchor="end" font-size="10">${tick(v)}</text>`
    ),
    ...[x0, x1].map((v) =>
      `<text x="${X(v)}" y="${height - pad.b + 14}" text-anchor="middle" font-size="10">${tick(v)}</text>`
    ),
    `<text x="${width / 2}" y="${height - 4}" text-anchor="middle" font-size="11">${esc(xLabel)}</text>`
  ]
  series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length]
    if (s.err !== undefined && s.x.length > 1) {
      const upper = s.x.map((x, i) => `${X(x)},${Y(s.y[i] + s.err![i])}`)
      const lower = s.x.map((x, i) => `${X(x)},${Y(s.y[i] - s.err![i])}`).reverse()
      parts.push(`<polygon points="${[...upper, ...lower].join(" ")}" fill="${color}" opacity="0.18"/>`)
    }
    parts.push(
      `<polyline class="series" fill="none" stroke="${color}" stroke-width="1.8" points="${
        s.x.map((x, i) => `${X(x)},${Y(s.y[i])}`).join(" ")
      }"/>`
    )
    s.x.forEach((x, i) => parts.push(`<circle cx="${X(x)}" cy="${Y(s.y[i])}" r="2.2" fill="${color}"/>`))
    parts.push(`<text x="${pad.l + 6}" y="${pad.t + 12 + 12 * k}" font-size="10" fill="${color}">${esc(s.name)}</text>`)
  })
  parts.push("</svg>")
  return parts.join("")
}

/** Points of several groups, one colour per group. */
export const scatter = (
  title: string,
  groups: ReadonlyArray<{ name: string; x: ReadonlyArray<number>; y: ReadonlyArray<number> }>,
  size = 260
): string => {
  const r = groups.reduce((m, g) => g.x.concat(g.y).reduce((mm, v) => Math.max(mm, Math.abs(v)), m), 2.5)
  const P = (v: number) => size / 2 + (v / r) * (size / 2 - 12)
  return [
    `<svg class="chart scatter" xmlns="http://www.w3.org/2000/svg" width="${size}" height="${
      size + 18
    }" viewBox="0 0 ${size} ${size + 18}">`,
    `<text x="${size / 2}" y="14" text-anchor="middle" font-size="12" font-weight="bold">${esc(title)}</text>`,
    `<g transform="translate(0,18)"><rect width="${size}" height="${size}" fill="#fafafa" stroke="#ccc"/>`,
    ...[1, 2].map((rad) =>
      `<circle cx="${size / 2}" cy="${size / 2}" r="${
        (rad / r) * (size / 2 - 12)
      }" fill="none" stroke="#bbb" stroke-dasharray="3 3"/>`
    ),
    ...groups.flatMap((g, k) =>
      g.x.map((x, i) => `<circle cx="${P(x)}" cy="${P(-g.y[i])}" r="1.6" fill="${COLORS[k % COLORS.length]}"/>`)
    ),
    "</g></svg>"
  ].join("")
}
