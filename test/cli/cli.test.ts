import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import { query } from "../support/db.ts";
import { createTestDatabase } from "../support/server.ts";

describe("the fastpubsub CLI", () => {
  it.each(["db-migrate", "server"])("explains %s with --help", async (command) => {
    const { code, stdout } = await runCli([command, "--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain(`$ fastpubsub ${command}`);
    expect(stdout).toMatch(/DESCRIPTION/);
  });

  it("lists its commands with --help", async () => {
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/db-migrate\s+Apply the pending database migrations/);
    expect(stdout).toMatch(/server\s+Migrate the database, then serve/);
  });

  it("migrates the configured database with db-migrate", async () => {
    const url = await createTestDatabase({ empty: true });
    const first = await runCli(["db-migrate"], { FASTPUBSUB_DATABASE_URL: url.replace("postgresql://", "postgresql+psycopg://") });
    expect(first.code).toBe(0);
    expect(first.stderr).toContain('"message":"applied migrations","versions":["0001"');
    const again = await runCli(["db-migrate"], { FASTPUBSUB_DATABASE_URL: url });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('"message":"database is up to date"');
    expect(await query(url, "SELECT to_regclass('subscriptions') IS NOT NULL AS present")).toEqual([{ present: true }]);
  });

  it.each(["db-migrate", "server"])("stops %s with one line naming a bad variable", async (command) => {
    const { code, stdout, stderr } = await runCli([command], { FASTPUBSUB_API_PORT: "eighty" });
    expect(code).not.toBe(0);
    expect(stdout).toBe("");
    expect(stderr).toBe("Error: FASTPUBSUB_API_PORT: must be an integer\n");
  });

  it("stops with a one-line reason, after its log lines, when the database cannot be reached", async () => {
    const { code, stdout, stderr } = await runCli(["db-migrate"], { FASTPUBSUB_DATABASE_URL: "postgresql://postgres@127.0.0.1:1/none" });
    expect(code).not.toBe(0);
    expect(stdout).toBe("");
    const lines = stderr.trim().split("\n");
    expect(lines.at(-1)).toMatch(/^Error: .*ECONNREFUSED/);
    for (const line of lines.slice(0, -1)) expect(JSON.parse(line)).toHaveProperty("message");
  });
});
