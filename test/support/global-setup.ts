import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { migrate } from "../../src/db/migrate.ts";
import { createLogger } from "../../src/logger.ts";
import { databaseUrl, query } from "./db.ts";
import { freePort } from "./ports.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** A URL of the test cluster's maintenance database, to create and drop databases. */
    adminUrl: string;
    /** The migrated database that each test file clones. */
    templateDatabase: string;
  }
}

const localPostgres = "postgresql://postgres@127.0.0.1:5432/postgres";

/**
 * Finds a PostgreSQL (FASTPUBSUB_TEST_DATABASE_URL, else 127.0.0.1:5432, else
 * an embedded one), creates this run's template database and migrates it; the
 * teardown drops every database of the run.
 */
export default async function setup(project: TestProject) {
  let embedded: EmbeddedDatabase | undefined;
  let embeddedDir: string | undefined;
  let adminUrl = process.env.FASTPUBSUB_TEST_DATABASE_URL ?? localPostgres;
  if (!process.env.FASTPUBSUB_TEST_DATABASE_URL && !(await reachable(localPostgres))) {
    embeddedDir = await mkdtemp(join(tmpdir(), "fastpubsub-test-"));
    const logger = createLogger({ level: "warning", format: "%(message)s" });
    embedded = await startEmbeddedPostgres({ baseDir: embeddedDir, port: await freePort(), logger });
    adminUrl = embedded.url;
  }
  const run = `fastpubsub_test_${Date.now().toString(36)}_${process.pid}`;
  await query(adminUrl, `CREATE DATABASE ${run}`);
  await migrate(databaseUrl(adminUrl, run));
  project.provide("adminUrl", adminUrl);
  project.provide("templateDatabase", run);

  return async () => {
    const databases = await query<{ datname: string }>(adminUrl, "SELECT datname FROM pg_database WHERE datname LIKE $1", [`${run}%`]);
    for (const { datname } of databases) await query(adminUrl, `DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
    await embedded?.stop();
    if (embeddedDir) await rm(embeddedDir, { recursive: true, force: true });
  };
}

async function reachable(url: string) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}
