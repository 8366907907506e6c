import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { migrate, readMigrations } from "../../src/db/migrate.ts";
import { query } from "../support/db.ts";
import { createTestDatabase } from "../support/server.ts";

/** A new folder for a test's own migrations, removed after the test. */
async function migrationsFolder() {
  const dir = await mkdtemp(join(tmpdir(), "fastpubsub-migrations-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe("migrate", () => {
  let url: string;
  beforeEach(async () => {
    url = await createTestDatabase({ empty: true });
  });

  it("applies every migration once and records it with its checksum", async () => {
    const files = await readMigrations();
    expect(files.map((file) => file.version)).toEqual([...files.map((file) => file.version)].sort());
    expect(await migrate(url)).toEqual(files.map((file) => file.version));
    const recorded = await query<{ version: string; checksum: string }>(
      url,
      "SELECT version, checksum FROM schema_migrations ORDER BY version",
    );
    expect(recorded).toEqual(files.map(({ version, checksum }) => ({ version, checksum })));
    expect(await query(url, "SELECT to_regclass('topics') IS NOT NULL AS present")).toEqual([{ present: true }]);
  });

  it("does nothing the second time", async () => {
    await migrate(url);
    expect(await migrate(url)).toEqual([]);
  });

  it("is safe when several servers run it at once", async () => {
    const runs = await Promise.all([migrate(url), migrate(url), migrate(url)]);
    const applied = runs.flat();
    expect(applied.sort()).toEqual((await readMigrations()).map((file) => file.version));
    expect(await query(url, "SELECT count(*)::int AS n FROM schema_migrations")).toEqual([{ n: applied.length }]);
  });

  it("refuses to continue when an applied migration has changed", async () => {
    const dir = await migrationsFolder();
    await writeFile(join(dir, "0001_first.sql"), "CREATE TABLE first_table (id INT);");
    expect(await migrate(url, await readMigrations(dir))).toEqual(["0001"]);
    await writeFile(join(dir, "0001_first.sql"), "CREATE TABLE first_table (id BIGINT);");
    await writeFile(join(dir, "0002_second.sql"), "CREATE TABLE second_table (id INT);");
    await expect(migrate(url, await readMigrations(dir))).rejects.toThrow(/0001_first has changed since it was applied/);
    expect(await query(url, "SELECT to_regclass('second_table') IS NULL AS absent")).toEqual([{ absent: true }]);
  });

  it("rolls back a failing migration entirely and records nothing of it", async () => {
    const dir = await migrationsFolder();
    await writeFile(join(dir, "0001_ok.sql"), "CREATE TABLE ok_table (id INT);");
    await writeFile(join(dir, "0002_broken.sql"), "CREATE TABLE half_table (id INT); SELECT * FROM no_such_table;");
    await expect(migrate(url, await readMigrations(dir))).rejects.toThrow(/0002_broken failed/);
    expect(await query(url, "SELECT to_regclass('half_table') IS NULL AS absent")).toEqual([{ absent: true }]);
    expect(await query(url, "SELECT version FROM schema_migrations")).toEqual([{ version: "0001" }]);
  });

  it("gives existing subscriptions a 60 s ack deadline, and existing deliveries a lease of 60 s from when they were made (0008)", async () => {
    const files = await readMigrations();
    expect(
      await migrate(
        url,
        files.filter((file) => file.version < "0008"),
      ),
    ).toHaveLength(7);
    await query(url, "SELECT create_topic('t')");
    await query(url, "SELECT create_subscription('s', 't', NULL, 5, 1, 10)");
    await query(url, `SELECT publish_messages('t', '[{"n": 1}, {"n": 2}]')`);
    await query(url, "SELECT consume_messages('s', 'w', 1)");
    await query(url, "UPDATE messages SET locked_at = locked_at - interval '10 seconds' WHERE locked_at IS NOT NULL");
    const before = await query<{ id: string; available_at: Date }>(url, "SELECT id, available_at FROM messages WHERE locked_at IS NULL");
    expect(await migrate(url, files)).toEqual(files.filter((file) => file.version >= "0008").map((file) => file.version));
    expect(await query(url, "SELECT id, ack_deadline_seconds FROM subscriptions")).toEqual([{ id: "s", ack_deadline_seconds: 60 }]);
    expect(
      await query(url, "SELECT available_at - locked_at = interval '60 seconds' AS leased FROM messages WHERE locked_at IS NOT NULL"),
    ).toEqual([{ leased: true }]);
    expect(await query(url, "SELECT id, available_at FROM messages WHERE locked_at IS NULL")).toEqual(before);
    // The delivery, made 10 s ago, is live for its remaining 50 s, and is acked.
    const [delivered] = await query<{ id: string }>(url, "SELECT id FROM messages WHERE locked_at IS NOT NULL");
    expect(await query(url, "SELECT ack_messages('s', ARRAY[$1::bigint], NULL) AS acked", [delivered?.id])).toEqual([{ acked: 1 }]);
  });
});
