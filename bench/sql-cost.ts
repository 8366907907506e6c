/**
 * PostgreSQL's CPU per call: publish, consume and ack of a batch of 100, one
 * call after another on one connection, through fastpubsub's SQL functions
 * and through the baseline's statements. Reads the backend's CPU time from
 * /proc, so PostgreSQL must run on this machine.
 *
 * `node bench/sql-cost.ts [DATABASE_URL]` (default: the benchmark's database, migrated by a server run)
 */
import { readFileSync } from "node:fs";
import pg from "pg";
import { baselineTable } from "./baseline.ts";
import { eventPayload } from "./payload.ts";

const client = new pg.Client({ connectionString: process.argv[2] ?? "postgresql://postgres@127.0.0.1:5432/fastpubsub_bench" });
await client.connect();
const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
const backend = rows[0]?.pid;
const ticksToMicros = 10_000; // /proc counts CPU time in 10 ms ticks

/** The backend's CPU time so far, in µs. */
function cpu() {
  const stat = readFileSync(`/proc/${backend}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * ticksToMicros;
}

const batches = 300;
const payloads = Array.from({ length: 100 }, (_, n) => eventPayload(n));

/** Runs publish `batches` times, then consume and ack as often, and prints each one's CPU per call. */
async function measure(
  name: string,
  calls: { publish: () => Promise<unknown>; consume: () => Promise<string[]>; ack: (ids: string[]) => Promise<unknown> },
) {
  const spent = { publish: 0, consume: 0, ack: 0 };
  for (let n = 0; n < batches; n++) {
    const start = cpu();
    await calls.publish();
    spent.publish += cpu() - start;
  }
  for (let n = 0; n < batches; n++) {
    let start = cpu();
    const ids = await calls.consume();
    spent.consume += cpu() - start;
    start = cpu();
    await calls.ack(ids);
    spent.ack += cpu() - start;
  }
  const each = Object.entries(spent).map(([call, micros]) => `${call} ${Math.round(micros / batches)}`);
  console.log(`${name.padEnd(10)} PostgreSQL CPU µs per batch of 100: ${each.join(", ")}`);
}

await client.query("SELECT delete_topic('sql-cost')").catch(() => undefined);
await client.query("SELECT create_topic('sql-cost')");
await client.query("SELECT create_subscription('sql-cost', 'sql-cost', NULL, 5, 1, 60)");
await measure("fastpubsub", {
  publish: () =>
    client.query({ name: "publish", text: "SELECT publish_messages($1, $2::json)", values: ["sql-cost", JSON.stringify(payloads)] }),
  consume: async () =>
    (await client.query({ name: "consume", text: "SELECT id FROM consume_messages($1, $2, $3)", values: ["sql-cost", "c", 100] })).rows.map(
      (row) => row.id,
    ),
  ack: (ids) => client.query({ name: "ack", text: "SELECT ack_messages($1, $2::bigint[], 30)", values: ["sql-cost", ids] }),
});
await client.query("SELECT delete_topic('sql-cost')");

await client.query(`DROP TABLE IF EXISTS sql_cost_messages; ${baselineTable("sql_cost_messages")}`);
await measure("baseline", {
  publish: () =>
    client.query({
      name: "baseline-publish",
      text: "INSERT INTO sql_cost_messages (subscription_id, payload) SELECT 's', m FROM unnest($1::jsonb[]) AS m",
      values: [payloads.map((payload) => JSON.stringify(payload))],
    }),
  consume: async () =>
    (
      await client.query({
        name: "baseline-consume",
        text: `UPDATE sql_cost_messages SET locked_at = now(), attempts = attempts + 1
               WHERE id IN (SELECT id FROM sql_cost_messages
                            WHERE subscription_id = $1 AND locked_at IS NULL AND available_at <= now()
                            ORDER BY available_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING id, payload`,
        values: ["s", 100],
      })
    ).rows.map((row) => row.id),
  ack: (ids) => client.query({ name: "baseline-ack", text: "DELETE FROM sql_cost_messages WHERE id = ANY ($1::bigint[])", values: [ids] }),
});
await client.query("DROP TABLE sql_cost_messages");
await client.end();
