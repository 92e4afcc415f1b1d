import { parquetMetadata, parquetReadObjects } from "hyparquet"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { openStream } from "../../random/streams.ts"
import { TrajectoryTable } from "../../schemas/trajectory.ts"
import { fromParquet, toParquet } from "../../store/parquet.ts"

/** A trajectory batch of `trajectories × steps` rows with 2×3 latents and some null columns. */
const makeBatch = (trajectories: number, steps: number) => {
  const rows = trajectories * steps
  const d = 6
  const rng = openStream(["test", "batch"])
  const f32 = () => Float32Array.from({ length: rows * d }, () => rng.normal())
  const f64 = () => Float64Array.from({ length: rows }, () => rng.normal())
  const lastStep = Uint8Array.from({ length: rows }, (_, r) => (r % steps === steps - 1 ? 1 : 0))
  const deterministic = Uint8Array.from({ length: rows }, (_, r) => (r % steps === steps - 1 ? 0 : 1))
  const columns = {
    iteration: new Int32Array(rows).fill(3),
    trajectory_id: Int32Array.from({ length: rows }, (_, r) => Math.floor(r / steps)),
    prompt_id: Int32Array.from({ length: rows }, (_, r) => Math.floor(r / steps) % 2),
    prompt: Array.from({ length: rows }, (_, r) => (r % 3 === 0 ? null : `a handwritten ${r % 10}`)),
    group_id: Int32Array.from({ length: rows }, (_, r) => Math.floor(r / steps / 2)),
    member: Int32Array.from({ length: rows }, (_, r) => Math.floor(r / steps) % 2),
    step: Int32Array.from({ length: rows }, (_, r) => r % steps),
    t: f64(),
    t_next: f64(),
    latent: f32(),
    next_latent: f32(),
    x0_pred: f32(),
    a: f64(),
    b: f64(),
    std: f64(),
    log_prob: { values: f64(), valid: deterministic },
    reward: { values: f64(), valid: lastStep },
    advantage: null
  }
  return {
    rows,
    columns,
    table: TrajectoryTable.build(rows, columns, { latent: [2, 3], next_latent: [2, 3], x0_pred: [2, 3] })
  }
}

describe("Parquet run store", () => {
  it("writes a trajectory batch and reads it back bit-exactly, nulls and tensor shapes included", () => {
    const { rows, columns } = makeBatch(7, 5)
    const back = TrajectoryTable.read(fromParquet(toParquet(makeBatch(7, 5).table), "mem"), "mem")
    expect(back.rows).toBe(rows)
    expect(back.shapes).toEqual({ latent: [2, 3], next_latent: [2, 3], x0_pred: [2, 3] })
    expect(Buffer.from((back.columns.latent as Float32Array).buffer).equals(Buffer.from(columns.latent.buffer))).toBe(
      true
    )
    expect(Buffer.from((back.columns.t as Float64Array).buffer).equals(Buffer.from(columns.t.buffer))).toBe(true)
    expect(back.columns.prompt).toEqual(columns.prompt)
    expect(back.columns.advantage).toBeNull()
    const reward = back.columns.reward as { values: Float64Array; valid: Uint8Array }
    expect(Array.from(reward.valid)).toEqual(Array.from(columns.reward.valid))
    for (let r = 0; r < rows; r++) if (reward.valid[r]) expect(reward.values[r]).toBe(columns.reward.values[r])
  })

  it("is read identically by an independent Parquet reader (hyparquet)", async () => {
    const { rows, columns, table } = makeBatch(4, 3)
    const bytes = toParquet(table)
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
    const meta = parquetMetadata(buffer)
    expect(Number(meta.num_rows)).toBe(rows)
    const objects = await parquetReadObjects({ file: buffer }) as Array<Record<string, unknown>>
    expect(objects.length).toBe(rows)
    for (let r = 0; r < rows; r++) {
      const o = objects[r]
      expect(o.trajectory_id).toBe(columns.trajectory_id[r])
      expect(o.prompt).toBe(columns.prompt[r])
      expect(o.t).toBe(columns.t[r])
      expect(o.log_prob).toBe(columns.log_prob.valid[r] ? columns.log_prob.values[r] : null)
      expect(Array.from(o.latent as ArrayLike<number>)).toEqual(Array.from(columns.latent.subarray(r * 6, r * 6 + 6)))
    }
    // The tensor shape travels in the Arrow schema stored in the file's key-value metadata.
    expect(meta.key_value_metadata?.some((kv) => kv.key === "ARROW:schema")).toBe(true)
  })

  it("names the file when it is truncated or corrupt", () => {
    const bytes = toParquet(makeBatch(2, 2).table)
    expect(() => fromParquet(bytes.subarray(0, bytes.length - 100), "runs/x/trajectories/iter-000001.parquet"))
      .toThrow(/runs\/x\/trajectories\/iter-000001\.parquet: .*truncated/)
    const corrupt = bytes.slice()
    corrupt.fill(7, 200, 400)
    corrupt.fill(7, bytes.length - 300, bytes.length - 10)
    expect(() => fromParquet(corrupt, "bad.parquet")).toThrow(/bad\.parquet/)
    expect(() => fromParquet(new Uint8Array(3), "tiny.parquet")).toThrow(/tiny\.parquet: .*3 bytes/)
  })

  it("fails naming the column when a table is built with a wrong length or type", () => {
    const { rows, columns } = makeBatch(2, 2)
    const shapes = { latent: [2, 3], next_latent: [2, 3], x0_pred: [2, 3] }
    expect(() => TrajectoryTable.build(rows, { ...columns, t: new Float64Array(rows + 1) }, shapes)).toThrow(
      /column "t" has 5 values, expected 4/
    )
    expect(() => TrajectoryTable.build(rows, { ...columns, latent: new Float32Array(rows * 5) }, shapes)).toThrow(
      /column "latent"/
    )
  })

  it("keeps the file intact on disk through a write-then-read cycle", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "etaflow-pq-"))
    const file = path.join(dir, "t.parquet")
    fs.writeFileSync(file, toParquet(makeBatch(3, 2).table))
    expect(fromParquet(new Uint8Array(fs.readFileSync(file)), file).numRows).toBe(6)
    fs.rmSync(dir, { recursive: true })
  })
})
