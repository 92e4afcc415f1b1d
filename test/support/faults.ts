/** Faults injected into run folders: flipped bytes, interrupted runs, a file system that runs out of space. */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

/** Inverts one byte in the middle of `file` (what a bad sector or a stray write does); returns its offset. */
export const flipByte = (file: string): number => {
  const data = fs.readFileSync(file)
  const at = Math.floor(data.length / 2)
  data[at] ^= 0xff
  fs.writeFileSync(file, data)
  return at
}

/** SHA-256 by coreutils' `sha256sum`: a second implementation to check etaflow's records against. */
export const sha256sum = (file: string): string => execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0]

/**
 * A copy of a complete run folder as if it had been stopped after `complete` iterations: the manifest's
 * commit point moved back, what later iterations wrote left behind as an interrupted commit leaves it.
 */
export const stoppedCopy = (run: string, dest: string, complete: number): string => {
  fs.cpSync(run, dest, { recursive: true })
  const file = path.join(dest, "manifest.json")
  const manifest = JSON.parse(fs.readFileSync(file, "utf8"))
  fs.writeFileSync(file, JSON.stringify({ ...manifest, status: "interrupted", iterations_complete: complete }))
  return dest
}

/** The iteration files (`iter-N…`) a folder holds at or after iteration `from`. */
export const filesFrom = (dir: string, from: number): Array<string> =>
  (fs.readdirSync(dir, { recursive: true }) as Array<string>).filter((f) => {
    const m = /iter-(\d{6})/.exec(f)
    return m !== null && Number(m[1]) >= from
  })

/**
 * A tmpfs of `bytes` at `dir` (root only): writes past its size fail with ENOSPC, as on a full disk.
 * Returns false where this process may not mount one.
 */
export const smallDisk = (dir: string, bytes: number): boolean => {
  fs.mkdirSync(dir, { recursive: true })
  return spawnSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir]).status === 0
}

/** Gives a tmpfs from `smallDisk` room again (space returns). */
export const growDisk = (dir: string, bytes: number): void => {
  execFileSync("mount", ["-o", `remount,size=${bytes}`, dir])
}

export const unmount = (dir: string): void => void spawnSync("umount", [dir])

/** Whether tmpfs mounts are possible here (root in a container that allows them). */
export const canMount = (() => {
  const probe = fs.mkdtempSync("/tmp/etaflow-mount-probe-")
  const ok = smallDisk(probe, 65536)
  if (ok) unmount(probe)
  fs.rmSync(probe, { recursive: true, force: true })
  return ok
})()
