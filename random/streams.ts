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

export type StreamKey = ReadonlyArray<string | number>

/** A stream of uniform and standard-normal float64 draws. */
export interface RandomStream {
  readonly key: StreamKey
  /**
   * The generator's state, four int32 words, live: a copy continues the stream elsewhere
   * (`streamFromState`, e.g. in a worker), and writing it back moves this stream to where that one ended.
   */
  readonly state: Int32Array
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

/** The generator state [s01, s00, s11, s10] a key hashes to. */
export const stateOf = (key: StreamKey): Array<number> => {
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
 * uniform (the flaw of the original). Faster than Box–Muller, where a rollout's JavaScript spends most
 * of its time (docs/performance.md).
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

/**
 * xoroshiro128+ on four int32 words [s01, s00, s11, s10] and its 53-bit uniform: pure-rand's
 * `XoroShiro128Plus` and `uniformFloat64` (v8) step for step — test/random.test.ts checks the outputs
 * against pure-rand bit for bit — with the state in an Int32Array instead of an object, the faster form
 * of a rollout's hottest loop (docs/performance.md).
 */
const next = (st: Int32Array): number => {
  const s01 = st[0]
  const s00 = st[1]
  const s11 = st[2]
  const s10 = st[3]
  const out = (s00 + s10) | 0
  const a0 = s10 ^ s00
  const a1 = s11 ^ s01
  st[1] = (s00 << 24) ^ (s01 >>> 8) ^ a0 ^ (a0 << 16)
  st[0] = (s01 << 24) ^ (s00 >>> 8) ^ a1 ^ ((a1 << 16) | (a0 >>> 16))
  st[3] = (a1 << 5) ^ (a0 >>> 27)
  st[2] = (a0 << 5) ^ (a1 >>> 27)
  return out
}

const uniformOf = (st: Int32Array): number =>
  (next(st) & 0x3ffffff) * 1.4901161193847656e-8 + (next(st) & 0x7ffffff) * 1.1102230246251565e-16

/**
 * The rest of a ziggurat attempt outside the block's rectangle: the tail, or the wedge test, and if
 * that rejects, new attempts.
 */
const outsideRectangle = (st: Int32Array, u: number, i: number): number => {
  if (i === 0) {
    // The tail beyond R (Marsaglia 1964); 1 − U keeps the logs finite.
    let x: number
    let y: number
    do {
      x = Math.log(1 - uniformOf(st)) / ZIG_R
      y = Math.log(1 - uniformOf(st))
    } while (-2 * y < x * x)
    return u < 0 ? x - ZIG_R : ZIG_R - x
  }
  // The wedge between this block's rectangle and the density.
  const x = u * ZIG_X[i]
  const f0 = Math.exp(-0.5 * (ZIG_X[i] * ZIG_X[i] - x * x))
  const f1 = Math.exp(-0.5 * (ZIG_X[i + 1] * ZIG_X[i + 1] - x * x))
  return f1 + uniformOf(st) * (f0 - f1) < 1 ? x : zigguratNormal(st)
}

const zigguratNormal = (st: Int32Array): number => {
  const u = 2 * uniformOf(st) - 1
  const i = next(st) & 0x7f
  // Inside a block's rectangle: most draws end here.
  return Math.abs(u) < ZIG_RATIO[i] ? u * ZIG_X[i] : outsideRectangle(st, u, i)
}

/**
 * `zigguratNormal` into every element of `out`, with the generator's state in locals: reading and
 * writing the Int32Array state on each of a draw's three generator steps was half the cost of a
 * rollout's step noise. Draws outside a block's rectangle (~1 %) hand the state back to the functions
 * above. test/random.test.ts checks the result against `normal()` draw by draw.
 */
const fillZiggurat = (st: Int32Array, out: Float64Array | Float32Array): void => {
  let [s01, s00, s11, s10] = [st[0], st[1], st[2], st[3]]
  let a0 = 0
  let a1 = 0
  let w = 0
  for (let n = 0; n < out.length; n++) {
    // Three steps of `next`: the uniform's high and low words, then the block index, written out (faster
    // than a loop over a scratch array: docs/performance.md).
    const hi = (s00 + s10) | 0
    a0 = s10 ^ s00
    a1 = s11 ^ s01
    w = (s00 << 24) ^ (s01 >>> 8) ^ a0 ^ (a0 << 16)
    s01 = (s01 << 24) ^ (s00 >>> 8) ^ a1 ^ ((a1 << 16) | (a0 >>> 16))
    s00 = w
    s10 = (a1 << 5) ^ (a0 >>> 27)
    s11 = (a0 << 5) ^ (a1 >>> 27)
    const lo = (s00 + s10) | 0
    a0 = s10 ^ s00
    a1 = s11 ^ s01
    w = (s00 << 24) ^ (s01 >>> 8) ^ a0 ^ (a0 << 16)
    s01 = (s01 << 24) ^ (s00 >>> 8) ^ a1 ^ ((a1 << 16) | (a0 >>> 16))
    s00 = w
    s10 = (a1 << 5) ^ (a0 >>> 27)
    s11 = (a0 << 5) ^ (a1 >>> 27)
    const block = (s00 + s10) & 0x7f
    a0 = s10 ^ s00
    a1 = s11 ^ s01
    w = (s00 << 24) ^ (s01 >>> 8) ^ a0 ^ (a0 << 16)
    s01 = (s01 << 24) ^ (s00 >>> 8) ^ a1 ^ ((a1 << 16) | (a0 >>> 16))
    s00 = w
    s10 = (a1 << 5) ^ (a0 >>> 27)
    s11 = (a0 << 5) ^ (a1 >>> 27)
    const u = 2 * ((hi & 0x3ffffff) * 1.4901161193847656e-8 + (lo & 0x7ffffff) * 1.1102230246251565e-16) - 1
    if (Math.abs(u) < ZIG_RATIO[block]) out[n] = u * ZIG_X[block]
    else {
      st.set([s01, s00, s11, s10])
      out[n] = outsideRectangle(st, u, block)
      ;[s01, s00, s11, s10] = [st[0], st[1], st[2], st[3]]
    }
  }
  st.set([s01, s00, s11, s10])
}

/** Opens the stream addressed by `key`. */
export const openStream = (key: StreamKey): RandomStream => streamFromState(Int32Array.from(stateOf(key)), key)

/** The stream whose generator state is `st` (used in place: it advances as the stream draws). */
export const streamFromState = (st: Int32Array, key: StreamKey = []): RandomStream => {
  const uniform = () => uniformOf(st)
  return {
    key,
    state: st,
    uniform,
    normal: () => zigguratNormal(st),
    fillNormal: (out) => {
      fillZiggurat(st, out)
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
