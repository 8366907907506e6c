import { sql } from "slonik";
import type { DatabasePool } from "../db/pool.ts";

/** A health answer: status and JSON body. */
export interface HealthResponse {
  status: number;
  body: { status: string } | { detail: string };
}

/** Answers /liveness: the process is up. */
export function liveness(): HealthResponse {
  return { status: 200, body: { status: "alive" } };
}

/** Answers /readiness: ready when the database answers within two seconds. */
export async function readiness(db: DatabasePool): Promise<HealthResponse> {
  try {
    await Promise.race([
      db.oneFirst(sql.unsafe`SELECT 1`),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 2000).unref()),
    ]);
    return { status: 200, body: { status: "ready" } };
  } catch {
    return { status: 503, body: { detail: "database is down" } };
  }
}
