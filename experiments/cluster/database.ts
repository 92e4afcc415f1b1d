/**
 * The cluster's PostgreSQL: the `--cluster` URL read and checked, and a client layer that reaches
 * the server before anything else happens, so an unreachable database is one clear usage error
 * (exit 2) naming the host, port and database and what to check — not a hang or a driver trace.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, type Layer, Redacted } from "effect"
import type { SqlClient } from "effect/sql"
import { UsageError } from "../../kernel/errors.ts"
import { messageOf } from "../../schemas/message.ts"

export interface ClusterUrl {
  readonly url: string
  readonly host: string
  readonly port: number
  readonly database: string
}

/** Parses `postgres://user@host:port/database`; anything else is a usage error naming the flag. */
export const parseClusterUrl = (url: string): ClusterUrl => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new UsageError({ message: `--cluster ${url}: not a URL (expected postgres://user@host:5432/database)` })
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new UsageError({
      message: `--cluster ${url}: expected a postgres:// URL (the cluster keeps its messages in PostgreSQL)`
    })
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || decodeURIComponent(parsed.username)
  return { url, host: parsed.hostname, port: parsed.port === "" ? 5432 : Number(parsed.port), database }
}

const unreachable = (c: ClusterUrl, cause: unknown) =>
  new UsageError({
    message:
      `cannot reach the cluster database ${c.database} at ${c.host}:${c.port} (${
        messageOf(cause)
      }); check that PostgreSQL runs there and accepts TCP connections, and that the URL's user may connect ` +
      `to database ${c.database}`
  })

/**
 * A PostgreSQL client for the cluster, checked with a first query (5 s to connect). Few connections:
 * a runner's traffic is message polling and lease refreshes, not data.
 */
export const clusterDatabase = (c: ClusterUrl): Layer.Layer<SqlClient.SqlClient, UsageError> =>
  PgClient.layerFrom(
    PgClient.make({ url: Redacted.make(c.url), connectTimeout: "5 seconds", maxConnections: 4 }).pipe(
      Effect.tap((sql) => sql`SELECT 1`.pipe(Effect.timeout("10 seconds"))),
      Effect.mapError((e) => unreachable(c, e))
    )
  )
