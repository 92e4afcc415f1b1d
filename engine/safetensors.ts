/**
 * safetensors (huggingface's weight format): an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets}} plus "__metadata__", then the raw little-endian data.
 * No maintained npm package implements it; the format is this small.
 */
export interface NamedTensor {
  readonly data: Float32Array
  readonly shape: ReadonlyArray<number>
}

export const writeSafetensors = (
  tensors: Readonly<Record<string, NamedTensor>>,
  metadata: Readonly<Record<string, string>> = {},
  /** Where the file's bytes go (every byte is written, so a reused buffer is fine). */
  allocate: (byteLength: number) => Uint8Array = (n) => new Uint8Array(n)
): Uint8Array => {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  const names = Object.keys(tensors).sort()
  for (const name of names) {
    const { data, shape } = tensors[name]
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] }
    offset += data.byteLength
  }
  let json = JSON.stringify(header)
  // The data starts 8-byte aligned, as the reference implementation pads the header with spaces.
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8)
  const headerBytes = Buffer.from(json)
  const out = allocate(8 + headerBytes.length + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true)
  out.set(headerBytes, 8)
  let at = 8 + headerBytes.length
  for (const name of names) {
    const { data } = tensors[name]
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at)
    at += data.byteLength
  }
  return out
}

export const readSafetensors = (
  bytes: Uint8Array,
  file: string
): { tensors: Record<string, NamedTensor>; metadata: Record<string, string> } => {
  if (bytes.length < 8) throw new Error(`${file}: not a safetensors file (${bytes.length} bytes)`)
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true))
  if (8 + n > bytes.length) throw new Error(`${file}: safetensors header of ${n} bytes runs past the end of the file`)
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString("utf8")) as Record<
    string,
    { dtype: string; shape: Array<number>; data_offsets: [number, number] }
  >
  const base = 8 + n
  const tensors: Record<string, NamedTensor> = {}
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue
    if (info.dtype !== "F32") throw new Error(`${file}: tensor ${name} is ${info.dtype}; etaflow reads F32`)
    const [begin, end] = info.data_offsets
    if (base + end > bytes.length) throw new Error(`${file}: tensor ${name} runs past the end of the file (truncated?)`)
    tensors[name] = { data: new Float32Array(bytes.slice(base + begin, base + end).buffer), shape: info.shape }
  }
  return { tensors, metadata: (header.__metadata__ ?? {}) as unknown as Record<string, string> }
}
