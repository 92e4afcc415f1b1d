/**
 * Seeded random streams.
 *
 * Every draw in etaflow comes from a stream addressed by a key path, e.g.
 * `[seed, "iter", 3, "rollout", "init", chain]`. The key is hashed (SHA-256) into the 128-bit state
 * of a xoroshiro128+ generator (pure-rand), so
 *  - streams with different keys are independent (initial noise vs per-step noise, chain 0 vs 1),
 *  - a stream depends only on its key, never on how many other streams exist: sampling 1 chain or
 *    1,000 chains gives chain 0 the same numbers (batch invariance),
 *  - resume needs no RNG state beyond (seed, iteration): re-deriving a key gives the same stream.
 */
import { createHash } from "node:crypto"
import { xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus"
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64"

export type StreamKey = ReadonlyArray<string | number>

/** A stream of uniform and standard-normal float64 draws. */
export interface RandomStream {
  readonly key: StreamKey
  /** Uniform in [0, 1), 53 random bits. */
  uniform(): number
  /** Standard normal (Box–Muller; the second value of each pair is kept for the next call). */
  normal(): number
  /** Fills `out` with standard normals and returns it. */
  fillNormal<T extends Float64Array | Float32Array>(out: T): T
  /** Integer uniform in [0, n). */
  int(n: number): number
  /** A child stream keyed by this key plus `parts`. */
  child(...parts: ReadonlyArray<string | number>): RandomStream
}

const encodeKey = (key: StreamKey): string =>
  key.map((k) => (typeof k === "number" ? `n:${k}` : `s:${k}`)).join("\u0000")

const stateOf = (key: StreamKey): Array<number> => {
  const digest = createHash("sha256").update(encodeKey(key)).digest()
  const words: Array<number> = [digest.readInt32LE(0), digest.readInt32LE(4), digest.readInt32LE(8), digest.readInt32LE(12)]
  // xoroshiro128+ must not start from the all-zero state.
  return words.some((w) => w !== 0) ? words : [1, 0, 0, 0]
}

/** Opens the stream addressed by `key`. */
export const openStream = (key: StreamKey): RandomStream => {
  const gen = xoroshiro128plusFromState(stateOf(key))
  let spare = Number.NaN
  const uniform = () => uniformFloat64(gen)
  const normal = () => {
    if (!Number.isNaN(spare)) {
      const v = spare
      spare = Number.NaN
      return v
    }
    // 1 - u keeps the log argument in (0, 1].
    const r = Math.sqrt(-2 * Math.log(1 - uniform()))
    const theta = 2 * Math.PI * uniform()
    spare = r * Math.sin(theta)
    return r * Math.cos(theta)
  }
  return {
    key,
    uniform,
    normal,
    // The same sequence as repeated normal() calls, a Box–Muller pair per loop turn.
    fillNormal: (out) => {
      let i = 0
      if (!Number.isNaN(spare) && out.length > 0) {
        out[i++] = spare
        spare = Number.NaN
      }
      for (; i + 1 < out.length; i += 2) {
        const r = Math.sqrt(-2 * Math.log(1 - uniformFloat64(gen)))
        const theta = 2 * Math.PI * uniformFloat64(gen)
        out[i] = r * Math.cos(theta)
        out[i + 1] = r * Math.sin(theta)
      }
      if (i < out.length) out[i] = normal()
      return out
    },
    int: (n) => Math.floor(uniform() * n),
    child: (...parts) => openStream([...key, ...parts])
  }
}

/** Fisher–Yates permutation of 0..n-1 drawn from `stream`. */
export const permutation = (stream: RandomStream, n: number): Int32Array => {
  const p = Int32Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = stream.int(i + 1)
    const t = p[i]
    p[i] = p[j]
    p[j] = t
  }
  return p
}
