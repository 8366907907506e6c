/**
 * PostgreSQL's CPU per call: publish, consume and ack of a batch of 100, one
 * call after another, through fastpubsub's own queries (src/db/messages.ts)
 * and through the baseline driver. Reads the backends' CPU time from /proc,
 * so PostgreSQL must run on this machine.
 *
 * `node bench/sql-cost.ts [DATABASE_URL]` (default: the benchmark's database, migrated by a server run)
 */
import { readFileSync } from "node:fs";
import pg from "pg";
import type { QueueClient } from "../src/db/database.ts";
import { ackMessages, consumeMessages, publishMessages } from "../src/db/messages.ts";
import { createBaselineDriver } from "./baseline.ts";
import type { Consumer, Publisher } from "./driver.ts";
import { eventPayload } from "./payload.ts";

const databaseUrl = process.argv[2] ?? "postgresql://postgres@127.0.0.1:5432/fastpubsub_bench";
const monitor = new pg.Client({ connectionString: databaseUrl });
await monitor.connect();
const ticksToMicros = 10_000; // /proc counts CPU time in 10 ms ticks

/** The CPU time so far of every other client backend of the database, in µs. */
async function cpu() {
  const { rows } = await monitor.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
  );
  let ticks = 0;
  for (const { pid } of rows) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks * ticksToMicros;
}

const batches = 1000;
const payloads = Array.from({ length: 100 }, (_, n) => eventPayload(n));

/** Publishes `batches` times, then consumes and acks as often, and prints each call's CPU per batch. */
async function measure(name: string, publisher: Publisher, consumer: Consumer) {
  const spent = { publish: 0, consume: 0, ack: 0 };
  const timed = async <T>(call: keyof typeof spent, run: () => Promise<T>) => {
    const start = await cpu();
    const result = await run();
    spent[call] += (await cpu()) - start;
    return result;
  };
  for (let n = 0; n < batches; n++) await timed("publish", () => publisher.publish(payloads));
  for (let n = 0; n < batches; n++) {
    const messages = await timed("consume", () => consumer.consume(100));
    await timed("ack", () => consumer.ack(messages.map((message) => message.id)));
  }
  const each = Object.entries(spent).map(([call, micros]) => `${call} ${Math.round(micros / batches)}`);
  console.log(`${name.padEnd(10)} PostgreSQL CPU µs per batch of 100: ${each.join(", ")}`);
}

// fastpubsub: the server's own queries, on a pool of one connection.
const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
const queue: QueueClient = { raw: pool, query: (config) => pool.query(config) };
await monitor.query("SELECT delete_topic('sql-cost')").catch(() => undefined);
await monitor.query("SELECT create_topic('sql-cost')");
await monitor.query("SELECT create_subscription('sql-cost', 'sql-cost', NULL, 5, 1, 60, 60)");
await pool.query("SELECT 1"); // connects, so that its backend is counted from the start
await measure(
  "fastpubsub",
  { publish: (messages) => publishMessages(queue, "sql-cost", messages).then(() => undefined), close: async () => {} },
  {
    consume: (batchSize) => consumeMessages(queue, "sql-cost", "sql-cost", batchSize),
    ack: (ids) => ackMessages(queue, "sql-cost", ids).then(() => undefined),
    close: async () => {},
  },
);
await monitor.query("SELECT delete_topic('sql-cost')");
await pool.end();

// The baseline: its own driver, with one publisher and one consumer.
const baseline = createBaselineDriver(databaseUrl);
await baseline.setup("bench", [{ id: "sql-cost", filter: null }]);
await measure("baseline", await baseline.publisher(), await baseline.consumer("sql-cost"));
await baseline.close();
await monitor.end();
