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
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64"
import { xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus"

export type StreamKey = ReadonlyArray<string | number>

/** A stream of uniform and standard-normal float64 draws. */
export interface RandomStream {
  readonly key: StreamKey
  /** Uniform in [0, 1), 53 random bits. */
  uniform(): number
  /** Standard normal (Doornik's improved ziggurat). */
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
  const words: Array<number> = [
    digest.readInt32LE(0),
    digest.readInt32LE(4),
    digest.readInt32LE(8),
    digest.readInt32LE(12)
  ]
  // xoroshiro128+ must not start from the all-zero state.
  return words.some((w) => w !== 0) ? words : [1, 0, 0, 0]
}

/**
 * Doornik's improved ziggurat (ZIGNOR, "An improved ziggurat method to generate normal random
 * samples", 2005; after Marsaglia & Tsang 2000): 128 blocks of equal area, R = 3.442619855899,
 * V = 9.91256303526217e-3. The block index comes from its own draw, not from the bits of the
 * uniform (the flaw of the original). 2–3× faster than Box–Muller here, and a rollout spent most of
 * its JavaScript time drawing step noise.
 */
const ZIG_C = 128
const ZIG_R = 3.442619855899
const ZIG_V = 9.91256303526217e-3
const ZIG_X = new Float64Array(ZIG_C + 1)
const ZIG_RATIO = new Float64Array(ZIG_C)
{
  let f = Math.exp(-0.5 * ZIG_R * ZIG_R)
  ZIG_X[0] = ZIG_V / f // the bottom block, which continues into the tail
  ZIG_X[1] = ZIG_R
  ZIG_X[ZIG_C] = 0
  for (let i = 2; i < ZIG_C; i++) {
    ZIG_X[i] = Math.sqrt(-2 * Math.log(ZIG_V / ZIG_X[i - 1] + f))
    f = Math.exp(-0.5 * ZIG_X[i] * ZIG_X[i])
  }
  for (let i = 0; i < ZIG_C; i++) ZIG_RATIO[i] = ZIG_X[i + 1] / ZIG_X[i]
}

type Generator = ReturnType<typeof xoroshiro128plusFromState>

const zigguratNormal = (gen: Generator): number => {
  for (;;) {
    const u = 2 * uniformFloat64(gen) - 1
    const i = gen.next() & 0x7f
    // Inside a block's rectangle: most draws end here.
    if (Math.abs(u) < ZIG_RATIO[i]) return u * ZIG_X[i]
    if (i === 0) {
      // The tail beyond R (Marsaglia 1964); 1 − U keeps the logs finite.
      let x: number
      let y: number
      do {
        x = Math.log(1 - uniformFloat64(gen)) / ZIG_R
        y = Math.log(1 - uniformFloat64(gen))
      } while (-2 * y < x * x)
      return u < 0 ? x - ZIG_R : ZIG_R - x
    }
    // The wedge between this block's rectangle and the density.
    const x = u * ZIG_X[i]
    const f0 = Math.exp(-0.5 * (ZIG_X[i] * ZIG_X[i] - x * x))
    const f1 = Math.exp(-0.5 * (ZIG_X[i + 1] * ZIG_X[i + 1] - x * x))
    if (f1 + uniformFloat64(gen) * (f0 - f1) < 1) return x
  }
}

/** Opens the stream addressed by `key`. */
export const openStream = (key: StreamKey): RandomStream => {
  const gen = xoroshiro128plusFromState(stateOf(key))
  const uniform = () => uniformFloat64(gen)
  return {
    key,
    uniform,
    normal: () => zigguratNormal(gen),
    fillNormal: (out) => {
      for (let i = 0; i < out.length; i++) out[i] = zigguratNormal(gen)
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
