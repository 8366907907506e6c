import { sql } from "slonik";
import { z } from "zod";
import type { Config } from "../config/config.ts";
import * as messages from "../db/messages.ts";
import type { DatabasePool } from "../db/pool.ts";
import type { Logger } from "../logger.ts";

// The tables that every message RPC writes to, and so leaves dead rows in.
const hotTables = ["messages", "queue_counts", "acked_counts", "dead_letters"] as const;

// Any constant works; it only has to be the same for every fastpubsub process.
const maintenanceLockKey = 7_303_202_402;

/**
 * Folds the count deltas, then vacuums and analyzes each hot table with dead
 * rows, because PostgreSQL may run with autovacuum off. Only one server at a
 * time does it; the others skip. Returns the tables it vacuumed.
 */
export async function maintainTables(db: DatabasePool): Promise<string[]> {
  return db.connect(async (connection) => {
    const locked = await connection.oneFirst(sql.type(z.object({ locked: z.boolean() }))`
      SELECT pg_try_advisory_lock(${maintenanceLockKey}) AS locked
    `);
    if (!locked) return [];
    try {
      await messages.compactCounts(connection);
      const stale = await connection.anyFirst(sql.type(z.object({ relname: z.string() }))`
        SELECT relname FROM pg_stat_user_tables
        WHERE relname = ANY (${sql.array([...hotTables], "text")}) AND n_dead_tup > 1000 + 0.05 * n_live_tup
      `);
      const vacuumed = hotTables.filter((name) => stale.includes(name));
      // VACUUM of a large table may take longer than the server's statement timeout.
      await connection.query(sql.unsafe`SET statement_timeout = 0`);
      for (const table of vacuumed) {
        await connection.query(sql.unsafe`VACUUM (ANALYZE) ${sql.identifier([table])}`);
      }
      return vacuumed;
    } finally {
      await connection.query(sql.unsafe`RESET statement_timeout`);
      await connection.query(sql.unsafe`SELECT pg_advisory_unlock(${maintenanceLockKey})`);
    }
  });
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
 * Runs the lease expiry, the cleanup commands and the table maintenance in the server on their
 * intervals (0 switches one off), so that cron is optional; a job still
 * running when its next turn comes skips that turn. Returns a function that
 * stops them and waits for the runs in progress.
 */
export function startMaintenance(db: DatabasePool, settings: Settings, logger: Logger): () => Promise<void> {
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
        const vacuumed = await maintainTables(db);
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
