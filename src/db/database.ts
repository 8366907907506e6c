import pg from "pg";
import type { Config } from "../config/config.ts";
import type { Logger } from "../logger.ts";
import { DatabaseUnavailableError, isStatementRefusal } from "./errors.ts";
import { createDatabaseHealth, type DatabaseHealth } from "./health.ts";
import { createDatabasePool, type DatabasePool } from "./pool.ts";

/**
 * The server's connections to PostgreSQL: a slonik pool for typed queries, and
 * a plain `pg` pool of prepared statements (unnamed ones with
 * FASTPUBSUB_DATABASE_PREPARED_STATEMENTS=false) for the four hot-path RPCs,
 * where slonik's per-query overhead would cost a noticeable share of throughput.
 * Both connect on demand, so the server can start, and keep serving 503s,
 * while PostgreSQL is away.
 */
export interface Database {
  pool: DatabasePool;
  queue: QueueClient;
  health: DatabaseHealth;
  /** Resolves when PostgreSQL reads the message table within `timeoutMs`; rejects otherwise. */
  ping(timeoutMs: number): Promise<void>;
  end(): Promise<void>;
}

/**
 * Runs a statement of the message hot path: a named (prepared) one, or an
 * unnamed one when FASTPUBSUB_DATABASE_PREPARED_STATEMENTS is false.
 */
export interface QueueClient {
  query<R extends pg.QueryResultRow>(config: { name: string; text: string; values: unknown[] }): Promise<pg.QueryResult<R>>;
  /** The plain pool, for its counters. */
  readonly raw: pg.Pool;
}

type Settings = Pick<
  Config,
  | "databasePoolSize"
  | "databaseMaxOverflow"
  | "databasePoolTimeoutSeconds"
  | "databaseStatementTimeoutSeconds"
  | "databaseIdleInTransactionTimeoutSeconds"
  | "databaseEcho"
  | "databasePreparedStatements"
>;

// How much longer than the server's statement_timeout the client waits for an
// answer: PostgreSQL cancels first, unless the network or the server is gone.
const answerGraceMs = 2_000;

/** The most connections one server process opens: the message pool and the main pool at their largest. */
export function poolConnections(settings: Pick<Config, "databasePoolSize" | "databaseMaxOverflow">) {
  return { queue: settings.databasePoolSize + settings.databaseMaxOverflow, main: settings.databasePoolSize };
}

/** Creates both pools on one database; neither connects before its first call. */
export function openDatabase(url: string, settings: Settings, logger: Logger): Database {
  const health = createDatabaseHealth(logger);
  const echo = settings.databaseEcho ? logger : undefined;
  const statementTimeoutMs = settings.databaseStatementTimeoutSeconds * 1000;
  const idleInTransactionTimeoutMs = settings.databaseIdleInTransactionTimeoutSeconds * 1000;
  const acquireTimeoutMs = settings.databasePoolTimeoutSeconds * 1000;
  const sizes = poolConnections(settings);
  const pool = createDatabasePool(url, {
    maxPoolSize: sizes.main,
    acquireTimeoutMs,
    statementTimeoutMs,
    idleInTransactionTimeoutMs,
    health,
    echo,
  });
  // Like the seed's pool: up to poolSize connections stay open once opened; the overflow closes when idle.
  const raw = new pg.Pool({
    connectionString: url,
    min: settings.databasePoolSize,
    max: sizes.queue,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: acquireTimeoutMs,
    statement_timeout: statementTimeoutMs,
    idle_in_transaction_session_timeout: idleInTransactionTimeoutMs,
    keepAlive: true,
  });
  // An idle client that loses its connection reports it here; the pool replaces it.
  raw.on("error", () => {});
  // A client in use that loses its connection also emits 'error', which would
  // end the process unheard: note it, and let the call fail as unavailable.
  const lost = new WeakSet<pg.PoolClient>();
  raw.on("connect", (client) => client.on("error", () => lost.add(client)));
  const inUse = new Set<pg.PoolClient>();

  /**
   * Runs one query on a client of the plain pool, bounding the wait for its
   * answer; the client is kept after a refused statement when `keepRefused`.
   */
  async function run<R extends pg.QueryResultRow>(query: string | pg.QueryConfig, keepRefused = true): Promise<pg.QueryResult<R>> {
    const client = await raw.connect().catch((error: unknown) => {
      throw new DatabaseUnavailableError("cannot get a database connection", error);
    });
    inUse.add(client);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new DatabaseUnavailableError(`the database did not answer within ${statementTimeoutMs + answerGraceMs} ms`)),
        statementTimeoutMs + answerGraceMs,
      );
    });
    try {
      const result = await Promise.race([client.query<R>(query), deadline]);
      client.release();
      return result;
    } catch (error) {
      // pg-pool's own query() drops the connection after any error; a refused
      // statement (e.g. FP404) leaves the connection fine, so keep it.
      const refused = keepRefused && isStatementRefusal(error);
      client.release(refused ? undefined : (error as Error));
      if (!refused && lost.has(client) && !(error instanceof DatabaseUnavailableError)) {
        throw new DatabaseUnavailableError("lost the database connection", error);
      }
      throw error;
    } finally {
      clearTimeout(timer);
      inUse.delete(client);
    }
  }

  const queue: QueueClient = {
    raw,
    query<R extends pg.QueryResultRow>(config: { name: string; text: string; values: unknown[] }) {
      echo?.info("query", { sql: config.text });
      // A pooler in transaction mode may run each statement on another server
      // session, where a named statement is missing or already exists.
      const query = settings.databasePreparedStatements ? config : { text: config.text, values: config.values };
      return health.track(() => run<R>(query));
    },
  };
  return {
    pool,
    queue,
    health,
    async ping(timeoutMs) {
      // A failed probe leaves its transaction aborted: its connection is not kept.
      const probe = `BEGIN; SET LOCAL statement_timeout = ${Math.round(timeoutMs)}; SELECT 1 FROM messages LIMIT 0; COMMIT`;
      await health.track(() => run(probe, false));
    },
    async end() {
      // A call still waiting on PostgreSQL now belongs to a request the listener has already cut:
      // its connection is ended rather than waited for (up to the statement timeout).
      for (const client of inUse) void client.end().catch(() => {});
      await Promise.all([pool.end(), raw.end()]);
    },
  };
}
