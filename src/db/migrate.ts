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
 * own transaction, under a transaction-level advisory lock so that servers
 * starting together take turns. Nothing outlives a transaction, so it works
 * through a pooler in transaction mode (PgBouncer), where a session-level lock
 * would stay with whichever server connection took it. Refuses to go on when
 * an applied file has changed since. Returns the versions it applied.
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
  /** Runs `work` in a transaction that holds the migration lock. */
  const locked = async <T>(work: () => Promise<T>): Promise<T> => {
    await client.query("BEGIN");
    try {
      await client.query("SET LOCAL client_min_messages = warning");
      await client.query("SELECT pg_advisory_xact_lock($1)", [migrationLockKey]);
      const result = await work();
      await client.query("COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    }
  };
  /** The versions recorded as applied, with their checksums; throws if one of `files` has changed since. */
  const appliedVersions = async () => {
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
    return applied;
  };
  try {
    const applied = await locked(async () => {
      await client.query(`
        CREATE TABLE IF NOT EXISTS schema_migrations (
          version TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          checksum TEXT NOT NULL,
          applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )`);
      return appliedVersions();
    });
    const done: string[] = [];
    for (const migration of files.filter((file) => !applied.has(file.version))) {
      const appliedNow = await locked(async () => {
        // Another runner may have applied it since this one looked.
        if ((await appliedVersions()).has(migration.version)) return false;
        try {
          await client.query(migration.sql);
          await client.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [
            migration.version,
            migration.name,
            migration.checksum,
          ]);
        } catch (error) {
          throw new MigrationError(`migration ${migration.version}_${migration.name} failed: ${(error as Error).message}`, {
            cause: error,
          });
        }
        return true;
      });
      if (appliedNow) done.push(migration.version);
    }
    return done;
  } catch (error) {
    throw lost ? new DatabaseUnavailableError("lost the database connection while migrating", error) : error;
  } finally {
    await client.end().catch(() => {});
  }
}
