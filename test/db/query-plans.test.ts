import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "../support/server.ts";

// Guards for migrations 0005 and 0006: queue statistics are always stale, so
// the message functions must not leave index choice to them.
let client: pg.Client;

beforeAll(async () => {
  client = new pg.Client({ connectionString: await createTestDatabase() });
  await client.connect();
});

afterAll(async () => {
  await client.end();
});

/** The plan PostgreSQL makes for a statement, as text. */
async function plan(statement: string) {
  const { rows } = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN ${statement}`);
  return rows.map((row) => row["QUERY PLAN"]).join("\n");
}

describe("query plans of the message functions", () => {
  it("run with sequential scans priced out", async () => {
    const { rows } = await client.query<{ name: string; config: string[] | null }>(`
      SELECT proname AS name, proconfig AS config FROM pg_proc
      WHERE proname IN ('publish_messages', 'consume_messages', 'ack_messages', 'nack_messages', 'release_deliveries',
                        'cleanup_stuck_messages', 'list_dlq_messages', 'reprocess_dlq_messages')
    `);
    expect(rows).toHaveLength(8);
    for (const { name, config } of rows) expect({ name, config }).toEqual({ name, config: ["enable_seqscan=off"] });
  });

  it("test 'out for delivery' in a way the index of deliveries cannot serve, so that acks go by primary key", async () => {
    await client.query("BEGIN");
    try {
      // Without the primary key, the index of deliveries is what a strict lock test leads to.
      await client.query("ALTER TABLE messages DROP CONSTRAINT messages_pkey");
      await client.query("SET LOCAL enable_seqscan = off");
      const where = "subscription_key = 1 AND id = ANY ('{1,2}')";
      expect(await plan(`DELETE FROM messages WHERE ${where} AND locked_at > now() - interval '30 s'`)).toContain("messages_locked_idx");
      const ack = await plan(`DELETE FROM messages WHERE ${where} AND delivered_since(locked_at, now() - interval '30 s')`);
      expect(ack).not.toContain("messages_locked_idx");
      expect(ack).toContain("Seq Scan");
    } finally {
      await client.query("ROLLBACK");
    }
  });

  it("delivered_since is true only for a message locked after the given time", async () => {
    const { rows } = await client.query(`
      SELECT delivered_since(now(), now() - interval '1 s') AS live,
             delivered_since(now() - interval '1 min', now() - interval '1 s') AS expired,
             delivered_since(NULL, '-infinity') AS unlocked,
             delivered_since(now(), '-infinity') AS locked
    `);
    expect(rows).toEqual([{ live: true, expired: false, unlocked: false, locked: true }]);
  });
});
