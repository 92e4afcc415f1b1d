// The worker of engine/lanes.ts: holds onnxruntime sessions and runs their share of a batch's rows.
// Plain JavaScript (onnxruntime only), so the same file serves the repository and the installed package.
import { parentPort } from "node:worker_threads"
import * as ort from "onnxruntime-node"

const sessions = new Map()

const tensors = (feeds) =>
  Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]))

const handle = async (m) => {
  switch (m.op) {
    case "open":
      sessions.set(m.session, await ort.InferenceSession.create(m.bytes, m.options))
      return {}
    case "run": {
      const out = await sessions.get(m.session).run(tensors(m.feeds))
      const outputs = Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { data: t.data, dims: t.dims }]))
      return { outputs, transfer: Object.values(outputs).map((t) => t.data.buffer) }
    }
    case "close":
      await sessions.get(m.session)?.release()
      sessions.delete(m.session)
      return {}
  }
  throw new Error(`unknown request ${m.op}`)
}

parentPort.on("message", (m) => {
  handle(m).then(
    ({ transfer, ...reply }) => parentPort.postMessage({ id: m.id, ...reply }, transfer ?? []),
    (e) => parentPort.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) })
  )
})
