/**
 * The CPU priority (nice value) of this process's threads, read from /proc (Linux): field 19 of a
 * thread's stat line, counted after the command name, which may itself contain spaces and parentheses.
 */
import * as fs from "node:fs"

const niceOf = (statFile: string): number => {
  const stat = fs.readFileSync(statFile, "utf8")
  // Fields after ")": state is field 3, so nice (field 19) is the 17th.
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16])
}

/** The nice value of the calling thread. */
export const callingThreadNice = (): number => niceOf("/proc/thread-self/stat")

/** The nice values of every thread of the process. */
export const threadNices = (): Array<number> =>
  fs.readdirSync("/proc/self/task").map((tid) => niceOf(`/proc/self/task/${tid}/stat`))
