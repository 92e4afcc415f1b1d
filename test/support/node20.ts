/**
 * vitest 5 calls `Map.groupBy` (Node ≥ 21) when it reports failures; this machine runs Node 20, on
 * which a failing test would otherwise crash the reporter instead of being reported.
 */
const MapWithGroupBy = Map as MapConstructor & { groupBy?: unknown }
if (typeof MapWithGroupBy.groupBy !== "function") {
  Object.defineProperty(Map, "groupBy", {
    value: <K, T>(items: Iterable<T>, key: (item: T, index: number) => K): Map<K, Array<T>> => {
      const out = new Map<K, Array<T>>()
      let i = 0
      for (const item of items) {
        const k = key(item, i++)
        const group = out.get(k)
        if (group === undefined) out.set(k, [item])
        else group.push(item)
      }
      return out
    }
  })
}
