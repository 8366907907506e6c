/**
 * The idle cost of consumers that wait: `npm run bench:idle -- [options]`.
 * Starts a fastpubsub server, opens long-polls and streams on empty
 * subscriptions, and reports over the measured window the server's CPU (% of
 * one core) and the transactions PostgreSQL ran on the database (each
 * statement the server sends outside a transaction is one). The window is
 * --duration plus the 11 s it takes PostgreSQL to report its counts.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { SubscriptionService } from "../gen/fastpubsub/v1/subscription_service_pb.ts";
import { TopicService } from "../gen/fastpubsub/v1/topic_service_pb.ts";
import { cpuTimes } from "./cpu.ts";
import { ensureDatabase, startServer, stop } from "./server.ts";

const { values: options } = parseArgs({
  options: {
    "database-url": {
      type: "string",
      default: process.env.FASTPUBSUB_BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/fastpubsub_bench",
    },
    "long-polls": { type: "string", default: "100" },
    streams: { type: "string", default: "100" },
    duration: { type: "string", default: "60" },
    help: { type: "boolean", default: false },
  },
});
if (options.help) {
  process.stdout.write(`npm run bench:idle -- [options]

  --long-polls N       long-polls (wait_seconds=60) waiting on empty subscriptions (default 100)
  --streams N          StreamMessages streams open on empty subscriptions (default 100)
  --duration S         measured seconds, after every consumer is waiting (default 60)
  --database-url URL   the database (default $FASTPUBSUB_BENCH_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/fastpubsub_bench)
`);
  process.exit(0);
}

const databaseUrl = options["database-url"];
const longPolls = Number(options["long-polls"]);
const streams = Number(options.streams);
const durationMs = Number(options.duration) * 1000;

await ensureDatabase(databaseUrl);
const server = await startServer(databaseUrl);
const admin = new pg.Client({ connectionString: databaseUrl });
await admin.connect();
try {
  const transport = createGrpcTransport({ baseUrl: server.url });
  const topics = createClient(TopicService, transport);
  const subscriptions = createClient(SubscriptionService, transport);
  await topics.deleteTopic({ id: "bench-idle" }).catch(() => undefined);
  await topics.createTopic({ id: "bench-idle" });
  const ids = Array.from({ length: longPolls + streams }, (_, n) => `bench-idle-${n}`);
  for (const id of ids) await subscriptions.createSubscription({ id, topicId: "bench-idle" });

  const stopping = new AbortController();
  const { signal } = stopping;
  // Each long-poll asks again as soon as it is answered, as a real consumer does.
  const pollLoop = async (subscriptionId: string) => {
    while (!signal.aborted) {
      await subscriptions
        .consumeMessages({ subscriptionId, consumerId: "idle", waitSeconds: 60 }, { signal })
        .catch((error: unknown) => signal.aborted || console.log(String(error)));
    }
  };
  const streamLoop = async (subscriptionId: string) => {
    try {
      for await (const _ of subscriptions.streamMessages({ subscriptionId, consumerId: "idle" }, { signal })) {
        // heartbeats only: the subscriptions stay empty
      }
    } catch {}
  };
  const loops = [...ids.slice(0, longPolls).map(pollLoop), ...ids.slice(longPolls).map(streamLoop)];
  // Every consumer has made its first call and waits; PostgreSQL's backends report their
  // counts when idle for 10 s, so the set-up's are in before the window and its own after it.
  const statsDelayMs = 11_000;
  await sleep(statsDelayMs);

  const transactions = async () => {
    const { rows } = await admin.query<{ count: string }>(
      "SELECT pg_stat_force_next_flush(), (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()) AS count",
    );
    return Number(rows[0]?.count);
  };
  const serverPid = server.child.pid;
  const [cpuStart, xactStart, started] = [cpuTimes(serverPid).server, await transactions(), performance.now()];
  await sleep(durationMs + statsDelayMs);
  const [cpuEnd, xactEnd, seconds] = [cpuTimes(serverPid).server, await transactions(), (performance.now() - started) / 1000];
  stopping.abort();
  await Promise.all(loops);

  // The two probes of this script are themselves transactions.
  const serverTransactions = xactEnd - xactStart - 1;
  console.log(
    `idle consumers: ${longPolls} long-polls (wait_seconds=60) and ${streams} streams on empty subscriptions, ${seconds.toFixed(0)} s`,
  );
  console.log(`  server CPU: ${(((cpuEnd - cpuStart) / 1e6 / seconds) * 100).toFixed(2)} % of one core`);
  console.log(`  PostgreSQL transactions: ${serverTransactions} (${(serverTransactions / seconds).toFixed(2)} per second)`);
  await topics.deleteTopic({ id: "bench-idle" });
} finally {
  await admin.end();
  await stop(server.child);
}
