import type { Config } from "../src/config/config.ts";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { createDatabasePool, type DatabasePool } from "../src/db/pool.ts";
import type { Logger } from "../src/logger.ts";

/** Opens the configured database (or the embedded one) for one command, and closes it after `work`. */
export async function withDatabase<T>(config: Config, logger: Logger, work: (db: DatabasePool, url: string) => Promise<T>): Promise<T> {
  const embedded = config.databaseUrl
    ? undefined
    : await startEmbeddedPostgres({ baseDir: config.embeddedDataDir, port: config.embeddedPort, logger });
  const url = config.databaseUrl ?? embedded?.url ?? "";
  try {
    const db = await createDatabasePool(url, { maxPoolSize: 1 });
    try {
      return await work(db, url);
    } finally {
      await db.end();
    }
  } finally {
    await embedded?.stop();
  }
}
