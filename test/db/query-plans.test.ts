import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "../support/server.ts";

// Guards for migrations 0005, 0006, 0008 and 0011: queue statistics are always stale,
// so the message functions must not leave index choice to them.
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
      WHERE proname IN ('publish_messages', 'consume_messages', 'ack_messages', 'nack_messages', 'modify_ack_deadline',
                        'release_deliveries', 'expire_leases', 'cleanup_stuck_messages', 'list_dlq_messages',
                        'reprocess_dlq_messages', 'bury_messages', 'revive_dead_letters', 'purge_dead_letters',
                        'oldest_dead_letters', 'purge_dlq_messages', 'reprocess_all_dlq_messages', 'purge_all_dlq_messages',
                        'queue_stats')
    `);
    expect(rows).toHaveLength(18);
    for (const { name, config } of rows) {
      // The lease expiry, a background sweep, also gives up after a second behind a table lock.
      const expected =
        name === "expire_leases"
          ? ["enable_seqscan=off", "lock_timeout=1s"]
          : // The batches of dead letters come in index order, never from a bitmap scan and a sort.
            name === "oldest_dead_letters"
            ? ["enable_seqscan=off", "enable_bitmapscan=off"]
            : ["enable_seqscan=off"];
      expect({ name, config }).toEqual({ name, config: expected });
    }
  });

  it("test 'out for delivery' in a way the index of deliveries cannot serve, so that acks go by primary key", async () => {
    await client.query("BEGIN");
    try {
      // Without the primary key, the index of deliveries is what a strict lock test leads to.
      await client.query("ALTER TABLE messages DROP CONSTRAINT messages_pkey");
      await client.query("SET LOCAL enable_seqscan = off");
      const where = "subscription_key = 1 AND id = ANY ('{1,2}')";
      expect(await plan(`DELETE FROM messages WHERE ${where} AND locked_at > now() - interval '30 s'`)).toContain("messages_leases_idx");
      const ack = await plan(`DELETE FROM messages WHERE ${where} AND delivered_since(locked_at, now() - interval '30 s')`);
      expect(ack).not.toContain("messages_leases_idx");
      expect(ack).toContain("Seq Scan");
    } finally {
      await client.query("ROLLBACK");
    }
  });

  it("test a live lease in a way the index of deliveries cannot serve, so that ack, nack and ModifyAckDeadline go by primary key", async () => {
    const where = "subscription_key = 1 AND id = ANY ('{1,2}')";
    // The statements of ack_messages, nack_messages and modify_ack_deadline.
    const statements = (live: string) => [
      `DELETE FROM messages WHERE ${where} AND ${live} AND (NULL::text IS NULL OR consumer_id = NULL::text)`,
      `SELECT id FROM messages WHERE ${where} AND ${live} AND (NULL::text IS NULL OR consumer_id = NULL::text) FOR UPDATE`,
      `UPDATE messages SET available_at = now() + interval '30 s' WHERE ${where} AND ${live} AND (NULL::text IS NULL OR consumer_id = NULL::text)`,
    ];
    await client.query("BEGIN");
    try {
      await client.query("SET LOCAL enable_seqscan = off");
      for (const statement of statements("lease_live(locked_at, available_at, now())")) {
        expect(await plan(statement), statement).toContain("messages_pkey");
      }
      // Without the primary key, the index of deliveries is what a strict lease test leads to.
      await client.query("ALTER TABLE messages DROP CONSTRAINT messages_pkey");
      for (const statement of statements("locked_at IS NOT NULL AND available_at > now()")) {
        expect(await plan(statement), statement).toContain("messages_leases_idx");
      }
      for (const statement of statements("lease_live(locked_at, available_at, now())")) {
        const chosen = await plan(statement);
        expect(chosen, statement).not.toContain("messages_leases_idx");
        expect(chosen, statement).toContain("Seq Scan");
      }
    } finally {
      await client.query("ROLLBACK");
    }
  });

  it("find expired leases through the index of deliveries", async () => {
    await client.query("BEGIN");
    try {
      await client.query("SET LOCAL enable_seqscan = off");
      const expired = await plan(`
        SELECT id FROM messages
        WHERE subscription_key = 1 AND locked_at IS NOT NULL AND available_at <= now()
        ORDER BY available_at LIMIT 10 FOR UPDATE SKIP LOCKED
      `);
      expect(expired).toMatch(
        /Index Scan using messages_leases_idx[^\n]*\n\s+Index Cond: \(\(subscription_key = 1\) AND \(available_at <= now\(\)\)\)/,
      );
    } finally {
      await client.query("ROLLBACK");
    }
  });

  it("count delayed messages in the ready index past now, and take dead letters in batches from the oldest", async () => {
    await client.query("BEGIN");
    try {
      await client.query("SET LOCAL enable_seqscan = off");
      const delayed = await plan(`
        SELECT count(*) FROM messages AS m
        WHERE m.subscription_key = 1 AND m.locked_at IS NULL AND m.available_at > now() AND m.delivery_attempts = 0
      `);
      expect(delayed).toMatch(
        /Index Scan using messages_ready_idx[^\n]*\n\s+Index Cond: \(\(subscription_key = 1\) AND \(available_at > now\(\)\)\)/,
      );
      // The statements of revive_dead_letters and purge_dead_letters.
      const byIds = await plan("DELETE FROM dead_letters WHERE id = ANY ('{1,2}') AND subscription_key + 0 = 1");
      expect(byIds).toContain("dead_letters_pkey");
      // oldest_dead_letters, which also prices out bitmap scans.
      await client.query("SET LOCAL enable_bitmapscan = off");
      const oldest = await plan(`
        SELECT d.id FROM dead_letters AS d
        WHERE d.subscription_key = 1 AND d.dead_at <= now()
        ORDER BY d.created_at, d.id LIMIT 5000 FOR UPDATE SKIP LOCKED
      `);
      expect(oldest).toMatch(/Index Scan using dead_letters_created_at_idx[^\n]*\n\s+Index Cond: \(subscription_key = 1\)/);
    } finally {
      await client.query("ROLLBACK");
    }
  });

  it("label dead letters' reasons with a bounded set", async () => {
    const { rows } = await client.query(`
      SELECT dead_letter_reason_label('max_delivery_attempts') AS attempts, dead_letter_reason_label('lease_expired') AS expired,
             dead_letter_reason_label('nacked') AS nacked, dead_letter_reason_label('bad schema') AS free_text
    `);
    expect(rows).toEqual([{ attempts: "max_delivery_attempts", expired: "lease_expired", nacked: "nacked", free_text: "nacked" }]);
  });

  it("lease_live is true only for a message out for delivery on a lease that has not ended", async () => {
    const { rows } = await client.query(`
      SELECT lease_live(now() - interval '5 s', now() + interval '1 s', now()) AS live,
             lease_live(now() - interval '5 s', now() - interval '1 s', now()) AS expired,
             lease_live(now() - interval '5 s', now(), now()) AS ending,
             lease_live(NULL, now() + interval '1 min', now()) AS ready_later
    `);
    expect(rows).toEqual([{ live: true, expired: false, ending: false, ready_later: false }]);
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
