import type { Database } from "../db/database.ts";

/** A health answer: status and JSON body. */
export interface HealthResponse {
  status: number;
  body: { status: string } | { detail: string };
}

/** Answers /liveness: the process is up. */
export function liveness(): HealthResponse {
  return { status: 200, body: { status: "alive" } };
}

const notReady: HealthResponse = { status: 503, body: { detail: "database is down" } };

/**
 * Answers /readiness: ready once the database is prepared (`prepared`), while
 * PostgreSQL reads the message table within two seconds on a connection of
 * the message pool (so a locked table or an exhausted pool is not ready).
 */
export async function readiness(db: Database, prepared: boolean): Promise<HealthResponse> {
  if (!prepared) return notReady;
  try {
    await Promise.race([db.ping(2000), new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 2500).unref())]);
    return { status: 200, body: { status: "ready" } };
  } catch {
    return notReady;
  }
}
