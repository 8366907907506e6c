import pg from "pg";
import { sql } from "slonik";
import { z } from "zod";
import type { Config } from "../config/config.ts";
import * as messages from "../db/messages.ts";
import type { DatabasePool } from "../db/pool.ts";
import type { Logger } from "../logger.ts";

// The tables that every message RPC writes to, and so leaves dead rows in.
const hotTables = ["messages", "queue_counts", "acked_counts", "dead_letters", "dead_letter_counts", "dedup_keys"] as const;

// Any constant works; it only has to be the same for every fastpubsub process.
const maintenanceLockKey = 7_303_202_402;

/** The application_name of the connection that runs the maintenance's VACUUM. */
export const vacuumConnectionName = "fastpubsub maintenance";

/**
 * Folds the count deltas, then vacuums and analyzes each hot table with dead
 * rows, because PostgreSQL may run with autovacuum off. Only one server at a
 * time folds (the others skip), under a transaction-level advisory lock, and
 * none vacuums a table that another server is vacuuming. VACUUM cannot run in
 * a transaction and may take longer than the server's statement timeout, so it
 * runs on a connection of its own, on which the server sets no timeout (the
 * role's or database's statement_timeout, if any, applies). Nothing outlives a
 * transaction on a pooled session, so this works through a pooler in
 * transaction mode (PgBouncer), where a session-level lock or SET would stay
 * with whichever server connection ran it. Returns the tables it vacuumed.
 */
export async function maintainTables(db: DatabasePool, databaseUrl: string): Promise<string[]> {
  const stale = await db.connect((connection) =>
    connection.transaction(async (transaction) => {
      const locked = await transaction.oneFirst(sql.type(z.object({ locked: z.boolean() }))`
        SELECT pg_try_advisory_xact_lock(${maintenanceLockKey}) AS locked
      `);
      if (!locked) return [];
      await messages.compactCounts(transaction);
      return transaction.anyFirst(sql.type(z.object({ relname: z.string() }))`
        SELECT relname FROM pg_stat_user_tables AS t
        WHERE relname = ANY (${sql.array([...hotTables], "text")}) AND n_dead_tup > 1000 + 0.05 * n_live_tup
          AND NOT EXISTS (
            SELECT FROM pg_stat_progress_vacuum AS p JOIN pg_stat_activity AS a USING (pid)
            WHERE p.datname = current_database() AND p.relid = t.relid AND a.backend_type = 'client backend'
          )
      `);
    }),
  );
  const vacuumed = hotTables.filter((name) => stale.includes(name));
  if (vacuumed.length === 0) return [];
  const client = new pg.Client({
    connectionString: databaseUrl,
    application_name: vacuumConnectionName,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  });
  // A connection lost mid-VACUUM fails the query at hand; the event itself must not end the process.
  client.on("error", () => {});
  await client.connect();
  try {
    for (const table of vacuumed) await client.query(`VACUUM (ANALYZE) ${pg.escapeIdentifier(table)}`);
  } finally {
    await client.end().catch(() => {});
  }
  return vacuumed;
}

// The most expired leases one expire_leases statement releases; a run repeats it while it releases that many.
const expireLeasesBatch = 1000;

/** Releases every delivery whose lease has ended, a bounded batch per statement; returns how many. */
export async function expireLeases(db: DatabasePool): Promise<number> {
  let released = 0;
  for (;;) {
    const batch = await messages.expireLeases(db, expireLeasesBatch);
    released += batch;
    if (batch < expireLeasesBatch) return released;
  }
}

// The most expired de-duplication claims one statement deletes; a run repeats it while it deletes that many.
const forgetDedupKeysBatch = 1000;

/** Deletes every de-duplication claim whose window has ended, a bounded batch per statement; returns how many. */
export async function forgetExpiredDedupKeys(db: DatabasePool): Promise<number> {
  let forgotten = 0;
  for (;;) {
    const batch = await messages.forgetExpiredDedupKeys(db, forgetDedupKeysBatch);
    forgotten += batch;
    if (batch < forgetDedupKeysBatch) return forgotten;
  }
}

type Settings = Pick<
  Config,
  | "expireLeasesIntervalSeconds"
  | "cleanupAckedMessagesOlderThanSeconds"
  | "cleanupAckedMessagesIntervalSeconds"
  | "cleanupStuckMessagesLockTimeoutSeconds"
  | "cleanupStuckMessagesIntervalSeconds"
  | "maintenanceIntervalSeconds"
>;

/**
 * Runs the lease expiry, the cleanup commands and the table maintenance (which also forgets
 * the de-duplication claims whose window has ended) in the server on their
 * intervals (0 switches one off), so that cron is optional; a job still
 * running when its next turn comes skips that turn. Returns a function that
 * stops them and waits for the runs in progress.
 */
export function startMaintenance(db: DatabasePool, databaseUrl: string, settings: Settings, logger: Logger): () => Promise<void> {
  const jobs: { name: string; seconds: number; run: () => Promise<unknown> }[] = [
    {
      name: "expire_leases",
      seconds: settings.expireLeasesIntervalSeconds,
      run: async () => {
        const released = await expireLeases(db);
        if (released > 0) logger.info("released expired leases", { released });
      },
    },
    {
      name: "cleanup_stuck_messages",
      seconds: settings.cleanupStuckMessagesIntervalSeconds,
      run: async () => {
        const released = await messages.cleanupStuckMessages(db, settings.cleanupStuckMessagesLockTimeoutSeconds);
        if (released > 0) logger.info("released stuck messages", { released });
      },
    },
    {
      name: "cleanup_acked_messages",
      seconds: settings.cleanupAckedMessagesIntervalSeconds,
      run: async () => {
        const forgotten = await messages.cleanupAckedMessages(db, settings.cleanupAckedMessagesOlderThanSeconds);
        if (forgotten > 0n) logger.info("forgot old acks", { forgotten: Number(forgotten) });
      },
    },
    {
      name: "maintenance",
      seconds: settings.maintenanceIntervalSeconds,
      run: async () => {
        // Claims whose window ended first, so that the vacuum that follows reclaims their space.
        const forgotten = await forgetExpiredDedupKeys(db);
        if (forgotten > 0) logger.debug("forgot expired de-duplication claims", { forgotten });
        const vacuumed = await maintainTables(db, databaseUrl);
        if (vacuumed.length > 0) logger.debug("vacuumed", { tables: vacuumed });
      },
    },
  ];
  const running = new Map<string, Promise<unknown>>();
  const timers = jobs
    .filter((job) => job.seconds > 0)
    .map((job) =>
      setInterval(() => {
        if (running.has(job.name)) return;
        const run = job.run().catch((error: unknown) => logger.warning(`${job.name} failed`, { error: String(error) }));
        running.set(job.name, run);
        void run.finally(() => running.delete(job.name));
      }, job.seconds * 1000).unref(),
    );
  return async () => {
    for (const timer of timers) clearInterval(timer);
    await Promise.all(running.values());
  };
}
