import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Message } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { type ServerProcess, startServerProcess } from "../support/cli.ts";
import { databaseChecksum, query } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { uniqueId } from "../support/ids.ts";
import { consume } from "../support/messages.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { quietJobs, startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

// `server` runs its maintenance every second, so that expired claims go quickly; `quiet` runs no
// background job, so that the refusals can be checked against table checksums.
let server: TestServer;
let other: ServerProcess;
let quiet: TestServer;
let quietDb: pg.Client;
beforeAll(async () => {
  [server, quiet] = await Promise.all([startTestServer({ FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS: "1" }), startTestServer(quietJobs)]);
  // A second server process on the same database.
  other = await startServerProcess({ FASTPUBSUB_DATABASE_URL: server.databaseUrl });
  quietDb = new pg.Client({ connectionString: quiet.databaseUrl });
  await quietDb.connect();
});
afterAll(async () => {
  await quietDb?.end();
  await other?.stop();
  await Promise.all([server?.close(), quiet?.close()]);
});

/** Creates a de-duplicated topic with one subscription. */
async function dedupTopic(api: Api, dedupKey: string, dedupWindowSeconds?: number) {
  const topicId = uniqueId("dedup");
  const subscriptionId = uniqueId("sub");
  await api.topics.createTopic({ id: topicId, dedupKey, dedupWindowSeconds });
  await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
  return { topicId, subscriptionId };
}

const payloads = (messages: Message[]) => messages.map((message) => message.payload);

describe.each(protocols)("de-duplicated topics over %s", (protocol) => {
  let api: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
  });

  it("shows dedup_key and dedup_window_seconds on create, get and list, 600 s by default, and neither on a plain topic", async () => {
    const windowed = uniqueId("dedup");
    const defaulted = uniqueId("dedup");
    const plain = uniqueId("plain");
    const created = await api.topics.createTopic({ id: windowed, dedupKey: "order id", dedupWindowSeconds: 30 });
    expect(created).toMatchObject({ id: windowed, dedupKey: "order id", dedupWindowSeconds: 30 });
    expect(await api.topics.createTopic({ id: defaulted, dedupKey: "k" })).toMatchObject({ dedupKey: "k", dedupWindowSeconds: 600 });
    const plainTopic = await api.topics.createTopic({ id: plain });
    expect(plainTopic.dedupKey).toBeUndefined();
    expect(plainTopic.dedupWindowSeconds).toBeUndefined();
    expect(await api.topics.getTopic({ id: windowed })).toMatchObject({ dedupKey: "order id", dedupWindowSeconds: 30 });
    const listed = (await api.topics.listTopics({ limit: 100 })).data.find((topic) => topic.id === defaulted);
    expect(listed).toMatchObject({ dedupKey: "k", dedupWindowSeconds: 600 });
  });

  it("drops a payload whose key value was published within the window, earlier in the same call included, comparing text forms", async () => {
    const { topicId, subscriptionId } = await dedupTopic(api, "id", 60);
    await api.topics.publishMessages({
      topicId,
      messages: [
        { id: "a", n: 1 },
        { id: "a", n: 2 },
        { id: 1, n: 3 },
        { id: "1", n: 4 },
        { n: 5 },
        { n: 6 },
        { id: null, n: 7 },
        { id: true, n: 8 },
      ],
    });
    await api.topics.publishMessages({
      topicId,
      messages: [
        { id: "a", n: 9 },
        { id: "true", n: 10 },
        { id: "b", n: 11 },
      ],
    });
    expect(payloads(await consume(api, subscriptionId))).toEqual([
      { id: "a", n: 1 },
      { id: 1, n: 3 },
      { n: 5 },
      { n: 6 },
      { id: null, n: 7 },
      { id: true, n: 8 },
      { id: "b", n: 11 },
    ]);
  });

  it("publishes a value again once its window has passed", async () => {
    const { topicId, subscriptionId } = await dedupTopic(api, "id", 1);
    await api.topics.publishMessages({ topicId, messages: [{ id: "a", n: 1 }] });
    await api.topics.publishMessages({ topicId, messages: [{ id: "a", n: 2 }] });
    await sleep(1_200);
    await api.topics.publishMessages({
      topicId,
      messages: [
        { id: "a", n: 3 },
        { id: "a", n: 4 },
      ],
    });
    expect(payloads(await consume(api, subscriptionId))).toEqual([
      { id: "a", n: 1 },
      { id: "a", n: 3 },
    ]);
  });
});

describe("de-duplication under concurrent publishers", () => {
  it("publishes each value exactly once when 16 publishers on two servers send overlapping values at once", async () => {
    const apis = [createApi("connect-binary", server.url), createApi("rest", other.url)];
    const { topicId, subscriptionId } = await dedupTopic(apis[0] as Api, "key", 600);
    const values = 200;
    await Promise.all(
      Array.from({ length: 16 }, async (_, publisher) => {
        const api = apis[publisher % 2] as Api;
        // Each publisher sends 200 values in its own order (some more than once), in batches of 25; the first sends each once.
        const order = Array.from({ length: values }, (_, n) => (n * (publisher * 2 + 1) + publisher * 7) % values);
        for (let start = 0; start < values; start += 25) {
          await api.topics.publishMessages({ topicId, messages: order.slice(start, start + 25).map((key) => ({ key, publisher })) });
        }
      }),
    );
    const seen: number[] = [];
    for (;;) {
      const batch = await consume(apis[0] as Api, subscriptionId, 100);
      if (batch.length === 0) break;
      seen.push(...batch.map((message) => (message.payload as { key: number }).key));
    }
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: values }, (_, n) => n));
  });
});

describe("de-duplication's bookkeeping", () => {
  it("is forgotten by the server's maintenance once the window has passed", async () => {
    const api = createApi("grpc", server.url);
    const { topicId } = await dedupTopic(api, "id", 1);
    await api.topics.publishMessages({ topicId, messages: Array.from({ length: 50 }, (_, id) => ({ id })) });
    const claims = async () =>
      (await query<{ n: number }>(server.databaseUrl, "SELECT count(*)::int AS n FROM dedup_keys WHERE topic_id = $1", [topicId]))[0]?.n;
    expect(await claims()).toBe(50);
    await waitFor(async () => ((await claims()) === 0 ? true : undefined), 10_000, "the expired claims to be forgotten");
  });

  it("goes with its topic, so that a topic created again with the same id starts afresh", async () => {
    const api = createApi("connect-json", server.url);
    const { topicId } = await dedupTopic(api, "id", 600);
    await api.topics.publishMessages({ topicId, messages: [{ id: 1 }] });
    await api.topics.deleteTopic({ id: topicId });
    await api.topics.createTopic({ id: topicId, dedupKey: "id" });
    const subscriptionId = uniqueId("sub");
    await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
    await api.topics.publishMessages({ topicId, messages: [{ id: 1 }] });
    expect(payloads(await consume(api, subscriptionId))).toEqual([{ id: 1 }]);
  });
});

describe.each(protocols)("de-duplication's bad input over %s", (protocol) => {
  it.each([
    [{ dedupWindowSeconds: 60 }, /^dedup_window_seconds needs dedup_key$/],
    [{ dedupKey: "k", dedupWindowSeconds: 0 }, /^dedup_window_seconds must be between 1 and 86400$/],
    [{ dedupKey: "k", dedupWindowSeconds: 86_401 }, /^dedup_window_seconds must be between 1 and 86400$/],
    [{ dedupKey: "" }, /^dedup_key must be a payload key/],
    [{ dedupKey: "   " }, /^dedup_key must be a payload key/],
    [{ dedupKey: "k".repeat(257) }, /^dedup_key must be a payload key/],
  ])("refuses a topic with %j, writing nothing", async (fields, reason) => {
    const api = createApi(protocol, quiet.url);
    const before = await databaseChecksum(quietDb);
    const id = uniqueId("bad");
    const error = await expectCode(api.topics.createTopic({ id, ...fields }), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(reason);
    expect(await databaseChecksum(quietDb)).toEqual(before);
  });

  it("accepts the edges: a 256-character key, windows of 1 and 86400", async () => {
    const api = createApi(protocol, quiet.url);
    const key = "k".repeat(256);
    expect(await api.topics.createTopic({ id: uniqueId("edge"), dedupKey: key, dedupWindowSeconds: 1 })).toMatchObject({ dedupKey: key });
    expect(await api.topics.createTopic({ id: uniqueId("edge"), dedupKey: " k ", dedupWindowSeconds: 86_400 })).toMatchObject({
      dedupWindowSeconds: 86_400,
    });
  });
});

describe("a de-duplicated topic over REST", () => {
  it("is {id, created_at, dedup_key, dedup_window_seconds}, and a plain topic has no dedup fields", async () => {
    const id = uniqueId("dedup");
    const plain = uniqueId("plain");
    const post = (body: object) =>
      fetch(new URL("/topics", server.url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const created = await post({ id, dedup_key: "order_id" });
    expect(created.status).toBe(201);
    const json = (await created.json()) as Record<string, unknown>;
    expect(Object.keys(json).sort()).toEqual(["created_at", "dedup_key", "dedup_window_seconds", "id"]);
    expect(json).toMatchObject({ id, dedup_key: "order_id", dedup_window_seconds: 600 });
    expect(Object.keys((await (await post({ id: plain })).json()) as object).sort()).toEqual(["created_at", "id"]);
    const fetched = (await (await fetch(new URL(`/topics/${id}`, server.url))).json()) as Record<string, unknown>;
    expect(fetched).toMatchObject({ dedup_key: "order_id", dedup_window_seconds: 600 });
  });
});
