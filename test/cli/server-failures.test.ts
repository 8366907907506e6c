import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import { query } from "../support/db.ts";
import { createTestDatabase } from "../support/server.ts";

/** The last line a command wrote to stderr. */
const lastLine = (stderr: string) => stderr.trim().split("\n").at(-1);

describe("the server, alone or as a cluster, stops with a one-line reason", () => {
  it.each(["1", "2"])("when its connections cannot fit in PostgreSQL's (%s workers)", async (workers) => {
    const url = await createTestDatabase();
    const [limits] = await query<{ max: number }>(url, "SELECT current_setting('max_connections')::int AS max");
    const { code, stderr } = await runCli(["server"], {
      FASTPUBSUB_DATABASE_URL: url,
      FASTPUBSUB_API_NUM_WORKERS: workers,
      FASTPUBSUB_DATABASE_MAX_OVERFLOW: String(limits?.max),
    });
    expect(code).toBe(1);
    expect(lastLine(stderr)).toMatch(
      /^Error: FASTPUBSUB_DATABASE_POOL_SIZE=5 and FASTPUBSUB_DATABASE_MAX_OVERFLOW=\d+ may open \D*\d+.* connections/,
    );
  });

  it.each(["1", "2"])("when an applied migration has changed, without respawning workers (%s workers)", async (workers) => {
    const url = await createTestDatabase();
    await query(url, "UPDATE schema_migrations SET checksum = 'changed' WHERE version = '0001'");
    const { code, stderr } = await runCli(["server"], { FASTPUBSUB_DATABASE_URL: url, FASTPUBSUB_API_NUM_WORKERS: workers });
    expect(code).toBe(1);
    expect(lastLine(stderr)).toMatch(/^Error: migration 0001_\w+ has changed since it was applied/);
    expect(stderr).not.toContain("worker died");
  });
});
