/**
 * How cost grows with the work: `npm run bench:growth -- [options]`. Starts a
 * fastpubsub server on its own database and measures, over REST:
 * - backlog: consume+ack msg/s of two consumers (batches of 100) on a subscription
 *   holding N messages, and how long GET /subscriptions/{id}/metrics and /metrics take;
 * - fan-out: publish msg/s and routed rows/s of two publishers to a topic with S subscriptions;
 * - breadth: publish and consume+ack msg/s over T topics of one subscription each;
 * - dead letters: a page of the dead-letter queue, and reprocessing 1,000 of them,
 *   with D dead letters present.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import pg from "pg";
import { eventPayload } from "./payload.ts";
import { connection } from "./rest.ts";
import { ensureDatabase, startServer, stop } from "./server.ts";

const { values: options } = parseArgs({
  options: {
    backlogs: { type: "string", default: "0,1000000,10000000" },
    fanouts: { type: "string", default: "1,5,50,500" },
    topics: { type: "string", default: "10000" },
    "dead-letters": { type: "string", default: "1000000" },
    duration: { type: "string", default: "10" },
    "database-url": {
      type: "string",
      default: process.env.FASTPUBSUB_BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/fastpubsub_growth",
    },
    help: { type: "boolean", default: false },
  },
});
if (options.help) {
  process.stdout.write(`npm run bench:growth -- [options]

  --backlogs N,N,…     messages waiting in the subscription (default 0,1000000,10000000)
  --fanouts S,S,…      subscriptions of the published topic (default 1,5,50,500)
  --topics T           topics of one subscription each, for breadth (default 10000; 0 skips it)
  --dead-letters D     dead letters present (default 1000000; 0 skips it)
  --duration S         measured seconds of each throughput figure (default 10)
  --database-url URL   (default $FASTPUBSUB_BENCH_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/fastpubsub_growth)
`);
  process.exit(0);
}

const list = (text: string) => text.split(",").filter(Boolean).map(Number);
const durationMs = Number(options.duration) * 1000;
const databaseUrl = options["database-url"];
await ensureDatabase(databaseUrl);
const server = await startServer(databaseUrl);
const db = new pg.Client({ connectionString: databaseUrl });
await db.connect();

/** One keep-alive HTTP/1.1 connection to the server; a request answered otherwise than 2xx throws. */
const connect = () => {
  const http = connection(server.url);
  const ok: Record<string, number[]> = { GET: [200], POST: [201, 204], DELETE: [204, 404] };
  return {
    call: (method: "GET" | "POST" | "DELETE", path: string, body?: unknown) => http.expect(method, path, ok[method] ?? [200], body),
    close: () => http.close(),
  };
};
const admin = connect();

/** Deletes and creates `topicId` with the given subscriptions. */
async function setup(topicId: string, subscriptionIds: string[]) {
  await admin.call("DELETE", `/topics/${topicId}`);
  await admin.call("POST", "/topics", { id: topicId });
  for (const id of subscriptionIds) await admin.call("POST", "/subscriptions", { id, topic_id: topicId });
}

/** Milliseconds a call takes, the median of five. */
async function timeOf(call: () => Promise<unknown>) {
  const times: number[] = [];
  for (let n = 0; n < 5; n++) {
    const started = performance.now();
    await call();
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b)[2] ?? 0;
}

/** Runs `loop` on `workers` connections for the measured duration; returns what they counted per second. */
async function rate(workers: number, loop: (http: ReturnType<typeof connect>, index: number) => Promise<number>) {
  let counted = 0;
  const until = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, index) => {
      const http = connect();
      while (performance.now() < until) counted += await loop(http, index);
      await http.close();
    }),
  );
  return counted / ((performance.now() - started) / 1000);
}

const batch = Array.from({ length: 100 }, (_, n) => eventPayload(n));

/** A loop that publishes `messages` to a topic and counts them. */
const publish = (topicId: () => string, messages: unknown[]) => async (http: ReturnType<typeof connect>) => {
  await http.call("POST", `/topics/${topicId()}/messages`, messages);
  return messages.length;
};
const format = (value: number) => Math.round(value).toLocaleString("en-US");

const consumeAndAck = (subscriptionId: string) => async (http: ReturnType<typeof connect>, index: number) => {
  const text = await http.call("GET", `/subscriptions/${subscriptionId}/messages?consumer_id=c${index}&batch_size=100`);
  const ids = (JSON.parse(text) as { data: { id: string }[] }).data.map((message) => message.id);
  if (ids.length === 0) return 0;
  await http.call("POST", `/subscriptions/${subscriptionId}/acks`, ids);
  return ids.length;
};

try {
  console.log("backlog: two consumers taking batches of 100 and acking them, over REST");
  for (const backlog of list(options.backlogs)) {
    await setup("growth-backlog", ["growth-backlog"]);
    // Filled through publish_messages, 100,000 at a time, as publishes would have left them.
    for (let filled = 0; filled < backlog; filled += 100_000) {
      await db.query(
        `SELECT publish_messages('growth-backlog', (SELECT json_agg(json_build_object('n', n, 'country', 'BR', 'text', repeat('x', 150)))
           FROM generate_series(1, $1) AS n))`,
        [Math.min(100_000, backlog - filled)],
      );
    }
    await db.query("VACUUM ANALYZE messages");
    // With no backlog, a publisher keeps the consumers fed.
    const feeding =
      backlog === 0
        ? rate(
            1,
            publish(() => "growth-backlog", batch),
          )
        : undefined;
    const consumed = await rate(2, consumeAndAck("growth-backlog"));
    await feeding;
    const subscriptionMetrics = await timeOf(() => admin.call("GET", "/subscriptions/growth-backlog/metrics"));
    const metrics = await timeOf(() => admin.call("GET", "/metrics"));
    console.log(
      `  ${format(backlog).padStart(10)} waiting: ${format(consumed)} msg/s consumed+acked; ` +
        `GET …/metrics ${subscriptionMetrics.toFixed(1)} ms, GET /metrics ${metrics.toFixed(1)} ms`,
    );
  }
  await admin.call("DELETE", "/topics/growth-backlog");

  console.log("fan-out: two publishers posting batches of 100 to one topic, over REST");
  for (const fanout of list(options.fanouts)) {
    await setup(
      "growth-fanout",
      Array.from({ length: fanout }, (_, n) => `growth-fanout-${n}`),
    );
    const published = await rate(
      2,
      publish(() => "growth-fanout", batch),
    );
    console.log(
      `  ${String(fanout).padStart(4)} subscriptions: ${format(published)} msg/s published, ${format(published * fanout)} rows/s routed`,
    );
    await admin.call("DELETE", "/topics/growth-fanout");
  }

  const topics = Number(options.topics);
  if (topics > 0) {
    console.log(
      `breadth: ${format(topics)} topics of one subscription each, two publishers and two consumers picking at random, over REST`,
    );
    await db.query(`SELECT create_topic('growth-t-' || n) FROM generate_series(1, $1) AS n`, [topics]);
    await db.query(`SELECT create_subscription('growth-t-' || n, 'growth-t-' || n, NULL, 5, 5, 300, 60) FROM generate_series(1, $1) AS n`, [
      topics,
    ]);
    const pick = () => `growth-t-${1 + Math.floor(Math.random() * topics)}`;
    const [published, consumed] = await Promise.all([
      rate(2, publish(pick, batch.slice(0, 10))),
      rate(2, async (http, index) => consumeAndAck(pick())(http, index)),
    ]);
    const metrics = await timeOf(() => admin.call("GET", "/metrics"));
    console.log(`  ${format(published)} msg/s published, ${format(consumed)} msg/s consumed+acked; GET /metrics ${metrics.toFixed(1)} ms`);
    await db.query("SELECT delete_topic('growth-t-' || n) FROM generate_series(1, $1) AS n", [topics]);
  }

  const deadLetters = Number(options["dead-letters"]);
  if (deadLetters > 0) {
    console.log(`dead letters: ${format(deadLetters)} in one subscription, over REST`);
    await setup("growth-dlq", ["growth-dlq"]);
    // Put straight into the table: a million consume-nack cycles would take hours and end the same.
    await db.query(
      `INSERT INTO dead_letters (subscription_key, id, payload, delivery_attempts, created_at)
       SELECT (SELECT key FROM subscriptions WHERE id = 'growth-dlq'), nextval('message_ids'),
              json_build_object('n', n, 'text', repeat('x', 150)), 5, now() - make_interval(secs => $1 - n)
       FROM generate_series(1, $1) AS n`,
      [deadLetters],
    );
    await db.query("INSERT INTO queue_counts (subscription_key, dlq) SELECT key, $1 FROM subscriptions WHERE id = 'growth-dlq'", [
      deadLetters,
    ]);
    await db.query("VACUUM ANALYZE dead_letters");
    const first = await timeOf(() => admin.call("GET", "/subscriptions/growth-dlq/dlq?limit=100"));
    const page = JSON.parse(await admin.call("GET", "/subscriptions/growth-dlq/dlq?limit=100")) as { data: { id: string }[] };
    const ids: string[] = [];
    for (let offset = 0; ids.length < 1000; offset += 100) {
      const { data } = JSON.parse(await admin.call("GET", `/subscriptions/growth-dlq/dlq?offset=${offset}&limit=100`)) as {
        data: { id: string }[];
      };
      ids.push(...data.map((message) => message.id));
    }
    const started = performance.now();
    await admin.call("POST", "/subscriptions/growth-dlq/dlq/reprocess", ids);
    const reprocess = performance.now() - started;
    const metrics = await timeOf(() => admin.call("GET", "/subscriptions/growth-dlq/metrics"));
    console.log(
      `  first page of 100 ${first.toFixed(1)} ms (${page.data.length} dead letters), reprocess 1,000 ${reprocess.toFixed(1)} ms, ` +
        `GET …/metrics ${metrics.toFixed(1)} ms`,
    );
    await admin.call("DELETE", "/topics/growth-dlq");
  }
  await sleep(0);
} finally {
  await admin.close();
  await db.end();
  await stop(server.child);
}
