/**
 * The soak test: `npm run soak -- [options]`. Runs scenario A (two publishers
 * of batches of 100, two consumers pulling batches of 100 and acking them) at
 * a fixed rate against a fastpubsub server, reports every minute what would
 * show a leak or a slow decay, and ends with the first minute against the last.
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import pg from "pg";
import type { Driver } from "./driver.ts";
import { createGrpcDriver } from "./grpc.ts";
import { eventPayload } from "./payload.ts";
import { createRestDriver } from "./rest.ts";
import { ensureDatabase, startServer, stop } from "./server.ts";

const { values: options } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    rate: { type: "string", default: "5000" },
    every: { type: "string", default: "60" },
    protocol: { type: "string", default: "rest" },
    url: { type: "string" },
    "database-url": {
      type: "string",
      default: process.env.FASTPUBSUB_BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/fastpubsub_soak",
    },
    help: { type: "boolean", default: false },
  },
});

if (options.help) {
  process.stdout.write(`npm run soak -- [options]

  --minutes N           how long to run (default 10)
  --rate N              messages per second published, in all (default 5000: well below what the machine saturates at)
  --every S             seconds between reports (default 60)
  --protocol rest|grpc  how the clients talk to the server (default rest)
  --url URL             a running fastpubsub server; by default one is started on --database-url
  --database-url URL    the server's database, whose tables' dead tuples are reported
                        (default $FASTPUBSUB_BENCH_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/fastpubsub_soak)

Each report: delivered+acked and published msg/s, publish-to-delivery p99, unacked backlog, the server's
RSS, V8 heap used and event-loop lag p99 (from its /metrics, over the report's window), the dead tuples
of the hot tables (pg_stat_user_tables), and the machine's load average.
`);
  process.exit(0);
}

const batchSize = 100;
const rate = Number(options.rate);
const everyMs = Number(options.every) * 1000;
const minutes = Number(options.minutes);
const databaseUrl = options["database-url"];
const hotTables = ["messages", "queue_counts", "acked_counts", "dead_letters"];

/** One report: the figures of a window. */
type Figures = Record<string, number>;

/** The last value of a Prometheus series without labels in `text`. */
function metricValue(text: string, name: string) {
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

function percentile(samples: number[], p: number) {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

if (!options.url) await ensureDatabase(databaseUrl);
const system = options.url ? { url: options.url, child: undefined } : await startServer(databaseUrl);
const driver: Driver = options.protocol === "grpc" ? createGrpcDriver(system.url) : createRestDriver(system.url);
const stats = new pg.Client({ connectionString: databaseUrl });
await stats.connect();
await driver.setup("soak", [{ id: "soak-a", filter: null }]);

let running = true;
let published = 0;
let acked = 0;
let latencies: number[] = [];

// Each publisher keeps to its share of the rate on a fixed schedule, so a slow call is made up for, not skipped.
const publisher = async (first: number) => {
  const publisher = await driver.publisher();
  const intervalMs = (batchSize / (rate / 2)) * 1000;
  let next = performance.now();
  for (let n = first; running; n += 2) {
    await sleep(Math.max(0, next - performance.now()));
    next += intervalMs;
    const sent = performance.now();
    await publisher.publish(Array.from({ length: batchSize }, (_, m) => ({ ...eventPayload(n * batchSize + m), sent })));
    published += batchSize;
  }
  await publisher.close();
};
const consumer = async () => {
  const consumer = await driver.consumer("soak-a");
  while (running) {
    const messages = await consumer.consume(batchSize);
    if (messages.length === 0) {
      await sleep(1);
      continue;
    }
    const received = performance.now();
    for (const message of messages) latencies.push(received - ((message.payload as { sent: number }).sent ?? received));
    await consumer.ack(messages.map((message) => message.id));
    acked += messages.length;
  }
  await consumer.close();
};

/** The figures of the window since `since`, and resets the latency samples. */
async function report(since: { at: number; published: number; acked: number }): Promise<Figures> {
  const seconds = (performance.now() - since.at) / 1000;
  const metrics = await (await fetch(`${system.url}/metrics`)).text();
  const { rows } = await stats.query<{ relname: string; n_dead_tup: string }>(
    "SELECT relname, n_dead_tup FROM pg_stat_user_tables WHERE relname = ANY ($1)",
    [hotTables],
  );
  const dead = Object.fromEntries(rows.map((row) => [`dead ${row.relname}`, Number(row.n_dead_tup)]));
  const figures: Figures = {
    "elapsed s": (performance.now() - startedAt) / 1000,
    "delivered+acked msg/s": (acked - since.acked) / seconds,
    "published msg/s": (published - since.published) / seconds,
    "p99 publish-to-delivery ms": percentile(latencies, 99),
    backlog: published - acked,
    "RSS MB": metricValue(metrics, "process_resident_memory_bytes") / 2 ** 20,
    "heap used MB": metricValue(metrics, "nodejs_heap_size_used_bytes") / 2 ** 20,
    "event-loop lag p99 ms": metricValue(metrics, "nodejs_eventloop_lag_p99_seconds") * 1000,
    ...Object.fromEntries(hotTables.map((table) => [`dead ${table}`, dead[`dead ${table}`] ?? 0])),
    // Whatever else runs on the machine shows here.
    "machine load (1 min)": Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]),
  };
  latencies = [];
  return figures;
}

const format = (figure: number) =>
  Number.isInteger(figure) || Math.abs(figure) >= 100 ? Math.round(figure).toLocaleString("en-US") : figure.toFixed(1);

console.log(
  `fastpubsub soak: scenario A over ${options.protocol} at ${rate.toLocaleString("en-US")} msg/s for ${options.minutes} min, ${system.url}`,
);
const loops = Promise.all([publisher(0), publisher(1), consumer(), consumer()]);
const reports: Figures[] = [];
const startedAt = performance.now();
let since = { at: performance.now(), published: 0, acked: 0 };
// The server's first scrape starts the event-loop window of the first report.
await fetch(`${system.url}/metrics`).then((response) => response.text());
const endAt = startedAt + minutes * 60_000;
while (performance.now() < endAt) {
  await sleep(Math.min(everyMs, endAt - performance.now()));
  const figures = await report(since);
  since = { at: performance.now(), published, acked };
  if (reports.length === 0) console.log(Object.keys(figures).join(" | "));
  reports.push(figures);
  console.log(Object.values(figures).map(format).join(" | "));
}
running = false;
await loops;
await driver.close();
await stats.end();
await stop(system.child);

const [first, last] = [reports[0] ?? {}, reports.at(-1) ?? {}];
console.log(`\n| | after ${format(first["elapsed s"] ?? 0)} s | after ${format(last["elapsed s"] ?? 0)} s |\n| --- | --- | --- |`);
for (const key of Object.keys(first).filter((key) => key !== "elapsed s")) {
  console.log(`| ${key} | ${format(first[key] ?? Number.NaN)} | ${format(last[key] ?? Number.NaN)} |`);
}
