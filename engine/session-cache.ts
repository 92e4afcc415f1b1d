/**
 * A process-wide cache of onnxruntime sessions by key: building a train graph's session costs ~1 s, every
 * iteration, without it. A cached session lives as long as the process; its users do not release it.
 */
import type { EngineSession } from "./session.ts"

const SESSIONS = new Map<string, EngineSession>()

/** The session built under `key` earlier in the process, or a new one built now and kept. */
export const cachedSession = async (key: string, build: () => Promise<EngineSession>): Promise<EngineSession> => {
  const hit = SESSIONS.get(key)
  if (hit !== undefined) return hit
  const session = await build()
  SESSIONS.set(key, session)
  return session
}

/** Whether a session is one of the cache's (and so not its user's to release). */
export const isCached = (session: EngineSession): boolean => [...SESSIONS.values()].includes(session)

/**
 * Releases every cached session (a process that runs many differently shaped networks in turn — the
 * benchmark — would otherwise keep each one's onnxruntime arena: a conv network's is gigabytes).
 */
export const releaseCachedSessions = async (): Promise<void> => {
  const sessions = [...SESSIONS.values()]
  SESSIONS.clear()
  await Promise.all(sessions.map((s) => s.release()))
}
