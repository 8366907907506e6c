import { randomUUID } from "node:crypto";
import { inject } from "vitest";
import { type Config, loadConfig } from "../../src/config/config.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningServer, startServer } from "../../src/server/server.ts";
import { admin, databaseUrl } from "./global-setup.ts";

/** A server started for one test file, on its own clone of the migrated template database. */
export interface TestServer extends RunningServer {
  databaseUrl: string;
  config: Config;
}

/** Creates a fresh database from the run's template and returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const adminUrl = inject("adminUrl");
  const name = `${inject("templateDatabase")}_${randomUUID().slice(0, 8)}`;
  await admin(adminUrl, `CREATE DATABASE ${name} TEMPLATE ${inject("templateDatabase")}`);
  return databaseUrl(adminUrl, name);
}

/**
 * Starts the real server on 127.0.0.1, port 0, over a fresh database.
 * `env` adds FASTPUBSUB_* settings.
 */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const url = await createTestDatabase();
  const config = loadConfig({
    FASTPUBSUB_DATABASE_URL: url,
    FASTPUBSUB_API_HOST: "127.0.0.1",
    FASTPUBSUB_API_PORT: "0",
    FASTPUBSUB_LOG_LEVEL: "error",
    ...env,
  });
  const server = await startServer(config, createLogger({ level: config.logLevel, format: config.logFormatter }));
  return { ...server, databaseUrl: url, config };
}
