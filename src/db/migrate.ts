import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { DatabaseUnavailableError } from "./errors.ts";

/** The folder of numbered `.sql` migration files. */
export const migrationsDir = join(import.meta.dirname, "../../migrations");

// Any constant works; it only has to be the same for every fastpubsub process.
const migrationLockKey = 7_303_202_401;

/** One migration file. */
export interface Migration {
  version: string;
  name: string;
  sql: string;
  checksum: string;
}

/** MigrationError reports a migration history that this code cannot continue. */
export class MigrationError extends Error {
  override name = "MigrationError";
}

/** Reads the migration files in version order. */
export async function readMigrations(dir = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => /^\d+_.+\.sql$/.test(file)).sort();
  return Promise.all(
    files.map(async (file) => {
      const sql = await readFile(join(dir, file), "utf8");
      const [version = "", ...rest] = file.replace(/\.sql$/, "").split("_");
      return { version, name: rest.join("_"), sql, checksum: createHash("sha256").update(sql).digest("hex") };
    }),
  );
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`, each in its
 * own transaction, under an advisory lock so that servers starting together
 * take turns. Refuses to go on when an applied file has changed since.
 * Returns the versions it applied.
 */
export async function migrate(databaseUrl: string, migrations?: Migration[]): Promise<string[]> {
  const files = migrations ?? (await readMigrations());
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000, keepAlive: true });
  // A connection lost mid-migration fails the query at hand; the event itself must not end the process.
  let lost = false;
  client.on("error", () => {
    lost = true;
  });
  await client.connect().catch((error: unknown) => {
    throw new DatabaseUnavailableError("cannot connect to the database", error);
  });
  try {
    await client.query("SET client_min_messages = warning");
    await client.query("SELECT pg_advisory_lock($1)", [migrationLockKey]);
    await client.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        checksum TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
      )`);
    const applied = new Map(
      (await client.query<{ version: string; checksum: string }>("SELECT version, checksum FROM schema_migrations")).rows.map((row) => [
        row.version,
        row.checksum,
      ]),
    );
    for (const migration of files) {
      const checksum = applied.get(migration.version);
      if (checksum !== undefined && checksum !== migration.checksum) {
        throw new MigrationError(
          `migration ${migration.version}_${migration.name} has changed since it was applied; add a new migration instead`,
        );
      }
    }
    const pending = files.filter((migration) => !applied.has(migration.version));
    for (const migration of pending) {
      await client.query("BEGIN");
      try {
        await client.query(migration.sql);
        await client.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [
          migration.version,
          migration.name,
          migration.checksum,
        ]);
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {});
        throw new MigrationError(`migration ${migration.version}_${migration.name} failed: ${(error as Error).message}`, { cause: error });
      }
    }
    return pending.map((migration) => migration.version);
  } catch (error) {
    throw lost ? new DatabaseUnavailableError("lost the database connection while migrating", error) : error;
  } finally {
    await client.end().catch(() => {});
  }
}
