import type { Config } from "../src/config/config.ts";
import { createDatabasePool, type DatabasePool } from "../src/db/pool.ts";
import type { Logger } from "../src/logger.ts";
import { provideDatabase } from "../src/server/server.ts";

/** Runs `work` on the configured database, or on the embedded one, started for it and stopped after. */
export async function withDatabaseUrl<T>(config: Config, logger: Logger, work: (url: string) => Promise<T>): Promise<T> {
  const { url, embedded } = await provideDatabase(config, logger);
  try {
    return await work(url);
  } finally {
    await embedded?.stop();
  }
}

/** Runs `work` on one connection to the configured (or embedded) database, closed after. */
export function withDatabase<T>(config: Config, logger: Logger, work: (db: DatabasePool) => Promise<T>): Promise<T> {
  return withDatabaseUrl(config, logger, async (url) => {
    const db = await createDatabasePool(url, { maxPoolSize: 1 });
    try {
      return await work(db);
    } finally {
      await db.end();
    }
  });
}
