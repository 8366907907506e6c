import { createPool, type DatabasePool, type DatabasePoolConnection, type Interceptor, SchemaValidationError } from "slonik";
import type { Logger } from "../logger.ts";
import { DatabaseUnavailableError, isStatementRefusal } from "./errors.ts";
import { createDatabaseHealth, type DatabaseHealth } from "./health.ts";

export type { DatabaseConnection, DatabasePool } from "slonik";

/** Checks every row against the zod schema of its `sql.type(…)` query. */
const resultParser: Interceptor = {
  name: "fastpubsub.resultParser",
  transformRow(context, query, row) {
    const parser = context.resultParser;
    if (!parser) return row;
    const result = parser["~standard"].validate(row);
    if (result instanceof Promise) throw new TypeError("row schemas must be synchronous");
    if (result.issues) throw new SchemaValidationError(query, row, result.issues);
    return result.value as typeof row;
  },
};

/** Logs every statement, for FASTPUBSUB_DATABASE_ECHO: its text only, as values may be secrets' hashes. */
function createEchoInterceptor(logger: Logger): Interceptor {
  return {
    name: "fastpubsub.echo",
    beforeQueryExecution(_context, query) {
      logger.info("query", { sql: query.sql });
      return null;
    },
  };
}

/** Options of a connection pool, from the FASTPUBSUB_DATABASE_* settings. */
export interface PoolOptions {
  maxPoolSize: number;
  /** How long a call waits for a connection, free or new, before it fails as unavailable (ms; default 5 s). */
  acquireTimeoutMs?: number;
  /** The server-side `statement_timeout` of every session (ms; none by default). */
  statementTimeoutMs?: number;
  /** The server-side `idle_in_transaction_session_timeout` of every session (ms; 60 s by default). */
  idleInTransactionTimeoutMs?: number;
  /** Where the outcome of every call is noted. */
  health?: DatabaseHealth;
  echo?: Logger;
}

const queryMethods = new Set(["any", "anyFirst", "exists", "many", "manyFirst", "maybeOne", "maybeOneFirst", "one", "oneFirst", "query"]);

/**
 * Creates a slonik pool whose typed queries are checked against their row
 * schemas. It opens on first use, so that it can be made while PostgreSQL is
 * away; a call that finds no connection within the acquire timeout fails as
 * unavailable; and a connection survives a refused statement: slonik closes a
 * connection after any error, so every 404 or 409 raised by a SQL function
 * would otherwise cost a new connection (~5 ms here).
 */
export function createDatabasePool(url: string, options: PoolOptions): DatabasePool {
  const acquireTimeoutMs = options.acquireTimeoutMs ?? 5_000;
  const health = options.health ?? createDatabaseHealth();
  let pool: DatabasePool | undefined;
  let opening: Promise<DatabasePool> | undefined;
  const open = () => {
    opening ??= openPool(url, options).then(
      (opened) => (pool = opened),
      (error: unknown) => {
        opening = undefined;
        throw new DatabaseUnavailableError("cannot connect to the database", error);
      },
    );
    return opening;
  };

  /** Runs `work` on a connection of the pool, failing if none is had within the acquire timeout. */
  const withConnection = <T>(work: (connection: DatabasePoolConnection) => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      let abandoned = false;
      const timer = setTimeout(() => {
        abandoned = true;
        reject(new DatabaseUnavailableError(`no database connection within ${acquireTimeoutMs} ms`));
      }, acquireTimeoutMs);
      open()
        .then((opened) =>
          opened.connect(async (connection) => {
            // A connection that came after the caller gave up goes straight back.
            if (abandoned) return undefined as T;
            clearTimeout(timer);
            return work(connection);
          }),
        )
        .then(resolve, reject)
        .finally(() => clearTimeout(timer));
    });

  const runQuery = (name: string, args: unknown[]) =>
    health.track(async () => {
      const outcome = await withConnection(async (connection) => {
        try {
          const method = Reflect.get(connection, name) as (...a: unknown[]) => Promise<unknown>;
          return { result: await method.apply(connection, args) };
        } catch (error) {
          if (isStatementRefusal(error)) return { refused: error };
          throw error;
        }
      });
      if ("refused" in outcome) throw outcome.refused;
      return outcome.result;
    });

  const facade = {
    connect: <T>(work: (connection: DatabasePoolConnection) => Promise<T>) => health.track(() => withConnection(work)),
    state: () => pool?.state() ?? { acquiredConnections: 0, idleConnections: 0, pendingDestroyConnections: 0, waitingClients: 0 },
    async end() {
      await opening?.catch(() => undefined);
      await pool?.end();
    },
  };
  return new Proxy(facade, {
    get(target, name) {
      if (typeof name === "string" && queryMethods.has(name)) return (...args: unknown[]) => runQuery(name, args);
      return Object.hasOwn(target, name) ? Reflect.get(target, name) : undefined;
    },
  }) as unknown as DatabasePool;
}

function openPool(url: string, options: PoolOptions): Promise<DatabasePool> {
  return createPool(url, {
    maxPoolSize: options.maxPoolSize,
    interceptors: options.echo ? [createEchoInterceptor(options.echo), resultParser] : [resultParser],
    captureStackTrace: false,
    connectionTimeout: options.acquireTimeoutMs ?? 5_000,
    statementTimeout: options.statementTimeoutMs ?? "DISABLE_TIMEOUT",
    idleInTransactionSessionTimeout: options.idleInTransactionTimeoutMs ?? 60_000,
    idleTimeout: 30_000,
    // end() comes after the listener has cut what was still in flight: nothing to wait for long.
    gracefulTerminationTimeout: 1_000,
    // slonik's default runs DISCARD ALL after every query, a second round trip;
    // fastpubsub keeps no session state, so a connection needs no reset.
    resetConnection: async () => {},
  });
}
