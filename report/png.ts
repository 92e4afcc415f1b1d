/** Grayscale PNG encoding (zlib from Node) for sample grids embedded in the report as data URIs. */
import * as zlib from "node:zlib"

const chunk = (type: string, data: Buffer) => {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  const body = Buffer.concat([Buffer.from(type, "latin1"), data])
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(zlib.crc32(body) >>> 0)
  return Buffer.concat([len, body, crc])
}

/** An 8-bit grayscale PNG of `width × height` values in [0, 1] (row-major). */
export const grayPng = (pixels: ArrayLike<number>, width: number, height: number): Buffer => {
  const raw = Buffer.alloc((width + 1) * height)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      raw[y * (width + 1) + 1 + x] = Math.round(255 * Math.min(1, Math.max(0, pixels[y * width + x])))
    }
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header[8] = 8
  header[9] = 0
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0))
  ])
}

/** Tiles images of `side × side` into a grid of `rows × cols` with a 2-pixel gap. */
export const tile = (
  images: ReadonlyArray<ArrayLike<number>>,
  side: number,
  cols: number,
  scale = 2
): { pixels: Float32Array; width: number; height: number } => {
  const rows = Math.ceil(images.length / cols)
  const cell = side * scale + 2
  const width = cols * cell
  const height = rows * cell
  const pixels = new Float32Array(width * height).fill(0.25)
  images.forEach((img, n) => {
    const [r, c] = [Math.floor(n / cols), n % cols]
    for (let y = 0; y < side * scale; y++) {
      for (let x = 0; x < side * scale; x++) {
        pixels[(r * cell + y) * width + c * cell + x] = img[Math.floor(y / scale) * side + Math.floor(x / scale)]
      }
    }
  })
  return { pixels, width, height }
}
