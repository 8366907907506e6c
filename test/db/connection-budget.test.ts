import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/config.ts";
import { checkConnectionBudget } from "../../src/db/connection-budget.ts";
import { createDatabasePool, type DatabasePool } from "../../src/db/pool.ts";
import { createLogger } from "../../src/logger.ts";
import { query } from "../support/db.ts";
import { createTestDatabase } from "../support/server.ts";

let url: string;
let db: DatabasePool;
let allowed: number;
beforeAll(async () => {
  url = await createTestDatabase();
  db = createDatabasePool(url, { maxPoolSize: 1 });
  const [row] = await query<{ allowed: number }>(
    url,
    "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int AS allowed",
  );
  allowed = row?.allowed ?? 0;
});
afterAll(() => db.end());

/** Checks the budget of `env`'s settings, returning the fields it logged. */
async function budget(env: Record<string, string>) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "info", format: "%(message)s", write: (line) => lines.push(JSON.parse(line)) });
  await checkConnectionBudget(db, loadConfig(env), logger);
  return lines.find((line) => line.message === "database connection budget");
}

describe("the connection budget", () => {
  it("counts both pools at their largest, the listening connection, the maintenance's VACUUM, and every worker and the primary", async () => {
    expect(await budget({})).toMatchObject({ needed: 22, per_process: 21, workers: 1, allowed });
    expect(await budget({ FASTPUBSUB_AUTH_ENABLED: "true", FASTPUBSUB_AUTH_SECRET_KEY: "k" })).toMatchObject({ needed: 22 });
    expect(
      await budget({ FASTPUBSUB_API_NUM_WORKERS: "3", FASTPUBSUB_DATABASE_POOL_SIZE: "2", FASTPUBSUB_DATABASE_MAX_OVERFLOW: "3" }),
    ).toMatchObject({ needed: 3 * (5 + 2 + 1) + 2 + 1, per_process: 8, workers: 3 });
  });

  it("refuses a configuration that cannot fit, naming the settings", async () => {
    const refused = budget({ FASTPUBSUB_DATABASE_POOL_SIZE: String(allowed), FASTPUBSUB_DATABASE_MAX_OVERFLOW: "1" });
    await expect(refused).rejects.toBeInstanceOf(ConfigError);
    await expect(refused).rejects.toThrow(/FASTPUBSUB_DATABASE_POOL_SIZE=.*FASTPUBSUB_DATABASE_MAX_OVERFLOW=1.*max_connections/);
  });
});
