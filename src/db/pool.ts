import { createPool, type DatabasePool, type Interceptor, SchemaValidationError } from "slonik";
import type { Logger } from "../logger.ts";

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

/** Opens a slonik pool whose typed queries are checked against their row schemas. */
export function createDatabasePool(url: string, options: PoolOptions): Promise<DatabasePool> {
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
