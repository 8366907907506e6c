import { randomUUID } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { type Config, loadConfig } from "../../src/config/config.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningServer, startServer } from "../../src/server/server.ts";
import { databaseUrl, query } from "./db.ts";

/** A server started for one test file, on its own clone of the migrated template database. */
export interface TestServer extends RunningServer {
  databaseUrl: string;
  config: Config;
}

/** Creates a fresh database, migrated unless `empty`, and returns its URL. */
export async function createTestDatabase(options: { empty?: boolean } = {}): Promise<string> {
  const adminUrl = inject("adminUrl");
  const template = inject("templateDatabase");
  const name = `${template}_${randomUUID().slice(0, 8)}`;
  await query(adminUrl, options.empty ? `CREATE DATABASE ${name}` : `CREATE DATABASE ${name} TEMPLATE ${template}`);
  return databaseUrl(adminUrl, name);
}

/**
 * Starts the real server on 127.0.0.1, port 0, over a fresh database, or over `databaseUrl`
 * (e.g. another test server's). `env` adds FASTPUBSUB_* settings.
 */
export async function startTestServer(env: Record<string, string> = {}, databaseUrl?: string): Promise<TestServer> {
  const url = databaseUrl ?? (await createTestDatabase());
  const config = loadConfig({
    FASTPUBSUB_DATABASE_URL: url,
    FASTPUBSUB_API_HOST: "127.0.0.1",
    FASTPUBSUB_API_PORT: "0",
    FASTPUBSUB_LOG_LEVEL: "critical",
    ...env,
  });
  const server = await startServer(config, createLogger({ level: config.logLevel, format: config.logFormatter }));
  return { ...server, databaseUrl: url, config };
}

/** Settings that stop every background job of a server, so that no table changes while a test compares checksums. */
export const quietJobs = {
  FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "0",
  FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: "0",
  FASTPUBSUB_EXPIRE_LEASES_INTERVAL_SECONDS: "0",
  FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS: "0",
};

/** Starts a server with quietJobs, and a client of its database for checksums. */
export async function startQuietServer(): Promise<{ server: TestServer; db: pg.Client }> {
  const server = await startTestServer(quietJobs);
  const db = new pg.Client({ connectionString: server.databaseUrl });
  await db.connect();
  return { server, db };
}
