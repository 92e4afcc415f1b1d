/** What the CLI's commands share. */
import { StoreError, UsageError } from "../kernel/errors.ts"
import { messageOf } from "../schemas/message.ts"

/** A command's failure: its usage errors as they are (exit 2), anything else a StoreError naming the file. */
export const usageOrStore = (file: string) => (e: unknown): UsageError | StoreError =>
  e instanceof UsageError ? e : new StoreError({ file, message: messageOf(e) })
