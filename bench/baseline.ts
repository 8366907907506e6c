import pg from "pg";
import type { Consumer, Driver, Publisher } from "./driver.ts";

/**
 * The leanest durable SQL for the benchmark's work, on a table of its own:
 * bigint identity key, one partial index on ready rows, filters evaluated in
 * SQL at publish, SKIP LOCKED consume, DELETE on ack, prepared statements and
 * one connection per loop. fastpubsub is measured as a ratio to this.
 */
export function createBaselineDriver(databaseUrl: string): Driver {
  const clients: pg.Client[] = [];
  const connect = async () => {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    clients.push(client);
    return client;
  };
  return {
    name: "raw SQL baseline",
    async setup(topic, subscriptions) {
      const client = await connect();
      await client.query(`
        DROP TABLE IF EXISTS bench_messages, bench_subscriptions;
        CREATE TABLE bench_subscriptions (id TEXT PRIMARY KEY, topic TEXT NOT NULL, filter JSONB);
        CREATE TABLE bench_messages (
          id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          subscription_id TEXT NOT NULL,
          payload JSONB NOT NULL,
          attempts INT NOT NULL DEFAULT 0,
          available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          locked_at TIMESTAMPTZ
        );
        CREATE INDEX bench_messages_ready ON bench_messages (subscription_id, available_at) WHERE locked_at IS NULL;
      `);
      for (const subscription of subscriptions) {
        await client.query("INSERT INTO bench_subscriptions VALUES ($1, $2, $3)", [subscription.id, topic, subscription.filter]);
      }
    },
    async publisher(): Promise<Publisher> {
      const client = await connect();
      return {
        async publish(messages) {
          await client.query({
            name: "publish",
            text: `INSERT INTO bench_messages (subscription_id, payload)
                   SELECT s.id, m FROM bench_subscriptions s, unnest($1::jsonb[]) AS m
                   WHERE s.topic = 'bench' AND (s.filter IS NULL OR NOT EXISTS (
                     SELECT 1 FROM jsonb_each(s.filter) f
                     WHERE m ? f.key AND NOT (m ->> f.key = ANY (SELECT jsonb_array_elements_text(f.value)))))`,
            values: [messages.map((message) => JSON.stringify(message))],
          });
        },
        close: () => client.end(),
      };
    },
    async consumer(subscriptionId): Promise<Consumer> {
      const client = await connect();
      return {
        async consume(batchSize) {
          const { rows } = await client.query<{ id: string; payload: unknown }>({
            name: "consume",
            text: `UPDATE bench_messages SET locked_at = now(), attempts = attempts + 1
                   WHERE id IN (SELECT id FROM bench_messages
                                WHERE subscription_id = $1 AND locked_at IS NULL AND available_at <= now()
                                ORDER BY available_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                   RETURNING id, payload`,
            values: [subscriptionId, batchSize],
          });
          return rows;
        },
        async ack(ids) {
          await client.query({ name: "ack", text: "DELETE FROM bench_messages WHERE id = ANY($1::bigint[])", values: [ids] });
        },
        close: () => client.end(),
      };
    },
    async close() {
      const first = clients[0];
      if (first) await first.query("DROP TABLE IF EXISTS bench_messages, bench_subscriptions");
      await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
    },
  };
}
