import { createPool, type DatabasePool, type Interceptor, SchemaValidationError } from "slonik";
import type { Logger } from "../logger.ts";
import { isStatementRefusal } from "./errors.ts";

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

/** Logs every statement, for FASTPUBSUB_DATABASE_ECHO. */
function createEchoInterceptor(logger: Logger): Interceptor {
  return {
    name: "fastpubsub.echo",
    beforeQueryExecution(_context, query) {
      logger.info("query", { sql: query.sql, values: query.values });
      return null;
    },
  };
}

/** Options of the connection pool, from the FASTPUBSUB_DATABASE_* settings. */
export interface PoolOptions {
  maxPoolSize: number;
  echo?: Logger;
}

const queryMethods = new Set(["any", "anyFirst", "exists", "many", "manyFirst", "maybeOne", "maybeOneFirst", "one", "oneFirst", "query"]);

/**
 * Runs the pool's query methods on a connection that survives a refused
 * statement: slonik closes a connection after any error, so every 404 or 409
 * raised by a SQL function would otherwise cost a new connection (~5 ms here).
 */
function keepConnectionsOnRefusal(pool: DatabasePool): DatabasePool {
  return new Proxy(pool, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof name !== "string" || !queryMethods.has(name)) return value;
      return async (...args: unknown[]) => {
        const outcome = await target.connect(async (connection) => {
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
      };
    },
  });
}

/** Opens a slonik pool whose typed queries are checked against their row schemas. */
export async function createDatabasePool(url: string, options: PoolOptions): Promise<DatabasePool> {
  return keepConnectionsOnRefusal(await openPool(url, options));
}

function openPool(url: string, options: PoolOptions): Promise<DatabasePool> {
  return createPool(url, {
    maxPoolSize: options.maxPoolSize,
    interceptors: options.echo ? [createEchoInterceptor(options.echo), resultParser] : [resultParser],
    captureStackTrace: false,
    statementTimeout: "DISABLE_TIMEOUT",
    idleTimeout: 30_000,
    // slonik's default runs DISCARD ALL after every query, a second round trip;
    // fastpubsub keeps no session state, so a connection needs no reset.
    resetConnection: async () => {},
  });
}
