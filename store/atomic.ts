/**
 * Atomic file writes: write to a temporary name beside the target, fsync, rename, fsync the folder.
 * A reader therefore sees either the old file or the complete new one, never a prefix, even when
 * the process is killed mid-write.
 */
import * as fs from "node:fs"
import * as path from "node:path"

const TMP_SUFFIX = ".tmp"

const fsyncDir = (dir: string) => {
  const fd = fs.openSync(dir, "r")
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

export const writeFileAtomic = (file: string, data: Uint8Array | string): void => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const tmp = `${file}.${process.pid}${TMP_SUFFIX}`
  const fd = fs.openSync(tmp, "w")
  try {
    fs.writeSync(fd, typeof data === "string" ? Buffer.from(data) : data)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
  fsyncDir(path.dirname(file))
}

/** Writes a folder of files atomically: built under a temporary name, then renamed into place. */
export const writeDirAtomic = (dir: string, files: Readonly<Record<string, Uint8Array | string>>): void => {
  const tmp = `${dir}.${process.pid}${TMP_SUFFIX}`
  fs.rmSync(tmp, { recursive: true, force: true })
  fs.mkdirSync(tmp, { recursive: true })
  for (const [name, data] of Object.entries(files)) {
    const fd = fs.openSync(path.join(tmp, name), "w")
    try {
      fs.writeSync(fd, typeof data === "string" ? Buffer.from(data) : data)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  }
  fsyncDir(tmp)
  fs.rmSync(dir, { recursive: true, force: true })
  fs.renameSync(tmp, dir)
  fsyncDir(path.dirname(dir))
}
