import pg from "pg";
import type { Logger } from "../logger.ts";
import { isStatementRefusal } from "./errors.ts";
import { createDatabasePool, type DatabasePool } from "./pool.ts";

/**
 * The server's connections to PostgreSQL: a slonik pool for typed queries, and
 * a plain `pg` pool of prepared statements for the four hot-path RPCs, where
 * slonik's per-query overhead would cost a noticeable share of throughput.
 */
export interface Database {
  pool: DatabasePool;
  queue: QueueClient;
  end(): Promise<void>;
}

/** Runs a prepared statement of the message hot path. */
export interface QueueClient {
  query<R extends pg.QueryResultRow>(config: { name: string; text: string; values: unknown[] }): Promise<pg.QueryResult<R>>;
  /** The plain pool, for its counters. */
  readonly raw: pg.Pool;
}

/** Connection settings, from FASTPUBSUB_DATABASE_*. */
export interface DatabaseOptions {
  poolSize: number;
  maxOverflow: number;
  echo?: Logger;
}

/** Opens both pools on one database. */
export async function openDatabase(url: string, options: DatabaseOptions): Promise<Database> {
  const maxPoolSize = options.poolSize + options.maxOverflow;
  const pool = await createDatabasePool(url, { maxPoolSize, echo: options.echo });
  // Like the seed's pool: up to poolSize connections stay open once opened; the overflow closes when idle.
  const raw = new pg.Pool({ connectionString: url, min: options.poolSize, max: maxPoolSize, idleTimeoutMillis: 30_000 });
  // An idle client that loses its connection reports it here; the pool replaces it.
  raw.on("error", () => {});
  const echo = options.echo;
  const queue: QueueClient = {
    raw,
    async query<R extends pg.QueryResultRow>(config: { name: string; text: string; values: unknown[] }) {
      echo?.info("query", { sql: config.text, values: config.values });
      const client = await raw.connect();
      try {
        const result = await client.query<R>(config);
        client.release();
        return result;
      } catch (error) {
        // pg-pool's own query() drops the connection after any error; a refused
        // statement (e.g. FP404) leaves the connection fine, so keep it.
        client.release(isStatementRefusal(error) ? undefined : (error as Error));
        throw error;
      }
    },
  };
  return {
    pool,
    queue,
    async end() {
      await Promise.all([pool.end(), raw.end()]);
    },
  };
}
