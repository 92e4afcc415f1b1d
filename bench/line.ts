/** One benchmark result, printed as a JSON line by `npm run bench`. */
export interface BenchLine {
  readonly name: string
  readonly value: number
  readonly unit: string
  readonly detail?: string
}
