import { sql } from "slonik";
import { z } from "zod";
import { type Config, ConfigError } from "../config/config.ts";
import type { Logger } from "../logger.ts";
import { poolConnections } from "./database.ts";
import type { DatabaseConnection } from "./pool.ts";

/** The connections of a cluster's primary process: its maintenance jobs and queue gauges. */
export const primaryConnections = 2;

// The connection the table maintenance opens while it vacuums, in the one process that runs it.
const vacuumConnections = 1;

type Settings = Pick<Config, "databasePoolSize" | "databaseMaxOverflow" | "apiNumWorkers">;

const LimitsRow = z.object({ max_connections: z.number(), reserved: z.number(), in_use: z.number() });

/**
 * Checks that the connections a configuration may open at most fit in what
 * PostgreSQL allows (max_connections less the reserved ones), logs the
 * budget, and throws a ConfigError naming the settings when they cannot fit.
 */
export async function checkConnectionBudget(db: DatabaseConnection, settings: Settings, logger: Logger) {
  const pools = poolConnections(settings);
  // One more for the listening connection (wake-ups and token revocations).
  const perProcess = pools.queue + pools.main + 1;
  const workers = settings.apiNumWorkers;
  const needed = workers * perProcess + (workers > 1 ? primaryConnections : 0) + vacuumConnections;
  const limits = await db.one(sql.type(LimitsRow)`
    SELECT current_setting('max_connections')::int AS max_connections,
           current_setting('superuser_reserved_connections')::int
             + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
           (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use
  `);
  const allowed = limits.max_connections - limits.reserved;
  logger.info("database connection budget", { needed, per_process: perProcess, workers, allowed, in_use: limits.in_use });
  if (needed <= allowed) return;
  const processes =
    workers > 1
      ? `FASTPUBSUB_API_NUM_WORKERS=${workers} × ${perProcess} + ${primaryConnections + vacuumConnections} for the primary = `
      : `${perProcess} + ${vacuumConnections} for the maintenance's VACUUM = `;
  throw new ConfigError(
    `FASTPUBSUB_DATABASE_POOL_SIZE=${settings.databasePoolSize} and FASTPUBSUB_DATABASE_MAX_OVERFLOW=${settings.databaseMaxOverflow} ` +
      `may open ${processes}${needed} connections, more than the ${allowed} PostgreSQL allows ` +
      `(max_connections ${limits.max_connections} less ${limits.reserved} reserved): lower FASTPUBSUB_API_NUM_WORKERS, ` +
      "FASTPUBSUB_DATABASE_POOL_SIZE or FASTPUBSUB_DATABASE_MAX_OVERFLOW, or raise max_connections",
  );
}
