/** The part of jStat (npm `jstat`, which ships no types) that experiments/stats.ts uses. */
declare module "jstat" {
  const jstat: {
    readonly jStat: {
      readonly studentt: {
        /** P(T ≤ x) for Student's t with `dof` degrees of freedom. */
        readonly cdf: (x: number, dof: number) => number
        /** The p-quantile of Student's t with `dof` degrees of freedom. */
        readonly inv: (p: number, dof: number) => number
      }
    }
  }
  export default jstat
}
