import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServerProcess } from "../support/cli.ts";
import { query } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { gauge } from "../support/gauges.ts";
import { uniqueId } from "../support/ids.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

let server: TestServer;
let other: ServerProcess;
beforeAll(async () => {
  server = await startTestServer();
  // A second server process on the same database: it hears this one's publishes only through PostgreSQL.
  other = await startServerProcess({ FASTPUBSUB_DATABASE_URL: server.databaseUrl });
});
afterAll(async () => {
  await other?.stop();
  await server?.close();
});

async function createSubscription(api: Api) {
  const topicId = uniqueId("topic");
  const subscriptionId = uniqueId("sub");
  await api.topics.createTopic({ id: topicId });
  await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
  return { topicId, subscriptionId };
}

describe.each(protocols)("long-poll over %s", (protocol) => {
  let api: Api;
  let otherApi: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
    otherApi = createApi(protocol, other.url);
  });

  it("returns as soon as a message is published through the same server", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    const started = performance.now();
    const polling = api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds: 30 });
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_long_polls_waiting")) >= 1 ? true : undefined));
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }] });
    const { data } = await polling;
    expect(data.map((message) => message.payload)).toEqual([{ n: 1 }]);
    // Far sooner than the 30 s it was allowed to wait.
    expect(performance.now() - started).toBeLessThan(15_000);
  });

  it("returns as soon as a message is published through another server on the same database", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    const started = performance.now();
    const polling = api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds: 30 });
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_long_polls_waiting")) >= 1 ? true : undefined));
    await otherApi.topics.publishMessages({ topicId, messages: [{ from: "other" }] });
    const { data } = await polling;
    expect(data.map((message) => message.payload)).toEqual([{ from: "other" }]);
    expect(performance.now() - started).toBeLessThan(15_000);
  });

  it("returns what is ready at once, without waiting", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }, { n: 2 }] });
    const { data } = await api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds: 60, batchSize: 10 });
    expect(data.map((message) => message.payload)).toEqual([{ n: 1 }, { n: 2 }]);
  });

  it("returns no message once wait_seconds have passed", async () => {
    const { subscriptionId } = await createSubscription(api);
    const started = performance.now();
    const { data } = await api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds: 1 });
    expect(data).toEqual([]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
  });

  it("refuses wait_seconds out of 0–60, and an unknown subscription", async () => {
    const { subscriptionId } = await createSubscription(api);
    for (const waitSeconds of [-1, 61, 3600]) {
      const error = await expectCode(
        api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds }),
        Code.InvalidArgument,
      );
      expect(error.rawMessage).toContain("wait_seconds");
    }
    await expectCode(
      api.subscriptions.consumeMessages({ subscriptionId: uniqueId("missing"), consumerId: "w1", waitSeconds: 5 }),
      Code.NotFound,
    );
  });
});

describe("long-poll", () => {
  const api = () => createApi("connect-binary", server.url);

  it("finds a message whose wake-up never came (published by plain SQL) with the fallback check", async () => {
    const { topicId, subscriptionId } = await createSubscription(api());
    const polling = api().subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds: 30 });
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_long_polls_waiting")) >= 1 ? true : undefined));
    await query(server.databaseUrl, `SELECT publish_messages('${topicId}', '[{"sql": true}]'::json)`);
    const started = performance.now();
    const { data } = await polling;
    expect(data.map((message) => message.payload)).toEqual([{ sql: true }]);
    // Found by the check that runs every second, long before the 30 s wait is over.
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("holds no database connection while it waits", async () => {
    const { subscriptionId } = await createSubscription(api());
    const controller = new AbortController();
    const polls = Array.from({ length: 50 }, (_, index) =>
      api()
        .subscriptions.consumeMessages({ subscriptionId, consumerId: `w${index}`, waitSeconds: 60 }, { signal: controller.signal })
        .catch(() => undefined),
    );
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_long_polls_waiting")) >= 50 ? true : undefined));
    const busy = await query<{ count: string }>(
      server.databaseUrl,
      "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' AND pid <> pg_backend_pid()",
    );
    // 50 waiting calls, and no connection of the server busy (the listener idles between heartbeats).
    expect(Number(busy[0]?.count)).toBeLessThanOrEqual(1);
    controller.abort();
    await Promise.all(polls);
  });

  it("lets a burst reach every waiter it feeds, one wake-up passed on at a time", async () => {
    const { topicId, subscriptionId } = await createSubscription(api());
    const polls = Array.from({ length: 5 }, (_, index) =>
      api().subscriptions.consumeMessages({ subscriptionId, consumerId: `w${index}`, waitSeconds: 30, batchSize: 2 }),
    );
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_long_polls_waiting")) >= 5 ? true : undefined));
    await api().topics.publishMessages({ topicId, messages: Array.from({ length: 10 }, (_, n) => ({ n })) });
    const answers = await Promise.all(polls);
    const received = answers.flatMap(({ data }) => data.map((message) => (message.payload as { n: number }).n));
    expect(received.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("frees the waiter of a client that goes away, at once", async () => {
    const { subscriptionId } = await createSubscription(api());
    const before = await gauge(server.url, "fastpubsub_long_polls_waiting");
    const controller = new AbortController();
    const polling = api()
      .subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds: 60 }, { signal: controller.signal })
      .catch((error: unknown) => error);
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_long_polls_waiting")) > before ? true : undefined));
    controller.abort();
    await polling;
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_long_polls_waiting")) === before ? true : undefined), 5_000);
  });
});

describe("long-poll at shutdown", () => {
  it("answers every waiting long-poll at once, with no message, when the server stops", async () => {
    const stopping = await startTestServer({ FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS: "30" });
    const api = createApi("rest", stopping.url);
    const { subscriptionId } = await createSubscription(api);
    const polls = Array.from({ length: 3 }, () => api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds: 60 }));
    await waitFor(async () => ((await gauge(stopping.url, "fastpubsub_long_polls_waiting")) >= 3 ? true : undefined));
    const started = performance.now();
    await stopping.close();
    const answers = await Promise.all(polls);
    expect(answers.map(({ data }) => data)).toEqual([[], [], []]);
    // Not held for the 60 s wait nor the 30 s shutdown timeout.
    expect(performance.now() - started).toBeLessThan(10_000);
    await sleep(0);
  });
});
