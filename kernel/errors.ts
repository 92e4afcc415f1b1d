/** Errors raised by the kernel. Each message names the pipeline, node, file or setting at fault. */
import { Data } from "effect"
import { messageOf } from "../schemas/message.ts"

/** The pipeline's graph is wrong (cycle, unwired input, unknown source, duplicate name). */
export class PipelineDefinitionError extends Data.TaggedError("PipelineDefinitionError")<{
  readonly pipeline: string
  readonly message: string
}> {}

/** Settings, config file or command line are invalid; the CLI exits with code 2. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** A node failed while running. */
export class NodeFailure extends Data.TaggedError("NodeFailure")<{
  readonly pipeline: string
  readonly node: string
  readonly iteration: number
  readonly message: string
  readonly cause?: unknown
}> {}

/** A NaN or Inf appeared; the iteration is abandoned and nothing of it is committed. */
export class NonFiniteError extends Data.TaggedError("NonFiniteError")<{
  readonly message: string
}> {}

/** Reading or writing the run folder failed. */
export class StoreError extends Data.TaggedError("StoreError")<{
  readonly file: string
  readonly message: string
}> {}

/** Errors of the kernel's own steps keep their tag; anything else is a StoreError naming the file. */
export const asStoreError = (file: string) => (e: unknown): UsageError | NonFiniteError | NodeFailure | StoreError =>
  e instanceof UsageError || e instanceof NonFiniteError || e instanceof NodeFailure ?
    e
    : new StoreError({ file, message: messageOf(e) })
