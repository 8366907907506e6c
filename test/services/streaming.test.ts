import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Message } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { type ServerProcess, startServerProcess } from "../support/cli.ts";
import { gauge } from "../support/gauges.ts";
import { uniqueId } from "../support/ids.ts";
import { type Api, createApi, type Protocol } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

let server: TestServer;
let other: ServerProcess;
beforeAll(async () => {
  server = await startTestServer({ FASTPUBSUB_API_MAX_STREAMS: "40" });
  // A second server process on the same database: it hears this one's publishes only through PostgreSQL.
  other = await startServerProcess({ FASTPUBSUB_DATABASE_URL: server.databaseUrl });
});
afterAll(async () => {
  await other?.stop();
  await server?.close();
});

const streamingProtocols = ["connect-json", "connect-binary", "grpc", "grpc-web"] as const satisfies Protocol[];

async function createSubscription(api: Api, settings: { ackDeadlineSeconds?: number } = {}) {
  const topicId = uniqueId("topic");
  const subscriptionId = uniqueId("sub");
  await api.topics.createTopic({ id: topicId });
  await api.subscriptions.createSubscription({ id: subscriptionId, topicId, ...settings });
  return { topicId, subscriptionId };
}

/** An open stream: the messages it has received so far, and how it ended. */
function openStream(api: Api, request: { subscriptionId: string; consumerId: string; maxOutstandingMessages?: number }) {
  const controller = new AbortController();
  const received: Message[] = [];
  const ended = (async () => {
    try {
      for await (const response of api.subscriptions.streamMessages(request, { signal: controller.signal }))
        received.push(...response.data);
      return undefined;
    } catch (error) {
      return ConnectError.from(error);
    }
  })();
  return { received, ended, cancel: () => controller.abort() };
}

const receivedAtLeast = (stream: { received: Message[] }, count: number) =>
  waitFor(async () => (stream.received.length >= count ? true : undefined), 10_000, `${count} messages on the stream`);

describe.each(streamingProtocols)("streaming pull over %s", (protocol) => {
  let api: Api;
  let otherApi: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
    otherApi = createApi(protocol, other.url);
  });

  it("delivers what is ready, then every message as it is published, locked to the stream's consumer", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }] });
    const stream = openStream(api, { subscriptionId, consumerId: "s1" });
    await receivedAtLeast(stream, 1);
    await api.topics.publishMessages({ topicId, messages: [{ n: 2 }, { n: 3 }] });
    await receivedAtLeast(stream, 3);
    expect(stream.received.map((message) => message.payload)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(stream.received.every((message) => message.deliveryAttempts === 1 && message.subscriptionId === subscriptionId)).toBe(true);
    const metrics = await api.subscriptions.getSubscriptionMetrics({ subscriptionId });
    expect({ available: metrics.available, delivered: metrics.delivered }).toEqual({ available: 0, delivered: 3 });
    stream.cancel();
    expect(await stream.ended).toBeInstanceOf(ConnectError);
  });

  it("delivers messages published through another server on the same database", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    const stream = openStream(api, { subscriptionId, consumerId: "s1" });
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_streams_open")) >= 1 ? true : undefined));
    await otherApi.topics.publishMessages({ topicId, messages: [{ from: "other" }] });
    await receivedAtLeast(stream, 1);
    expect(stream.received.map((message) => message.payload)).toEqual([{ from: "other" }]);
    stream.cancel();
    await stream.ended;
  });

  it("never has more than max_outstanding_messages unacked, and sends more as acks arrive through another server", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    await api.topics.publishMessages({ topicId, messages: Array.from({ length: 10 }, (_, n) => ({ n })) });
    const stream = openStream(api, { subscriptionId, consumerId: "s1", maxOutstandingMessages: 3 });
    await receivedAtLeast(stream, 3);
    // The stream is at its limit: nothing more comes while nothing is acked.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(stream.received).toHaveLength(3);
    await otherApi.subscriptions.ackMessages({ subscriptionId, messageIds: stream.received.slice(0, 2).map((message) => message.id) });
    await receivedAtLeast(stream, 5);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(stream.received).toHaveLength(5);
    const metrics = await api.subscriptions.getSubscriptionMetrics({ subscriptionId });
    expect({ available: metrics.available, delivered: metrics.delivered }).toEqual({ available: 5, delivered: 3 });
    stream.cancel();
    await stream.ended;
  });

  it("ends with not_found when the subscription is deleted, and refuses an unknown one", async () => {
    const { subscriptionId } = await createSubscription(api);
    const stream = openStream(api, { subscriptionId, consumerId: "s1" });
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_streams_open")) >= 1 ? true : undefined));
    await api.subscriptions.deleteSubscription({ id: subscriptionId });
    expect((await stream.ended)?.code).toBe(Code.NotFound);
    const unknown = openStream(api, { subscriptionId: uniqueId("missing"), consumerId: "s1" });
    expect((await unknown.ended)?.code).toBe(Code.NotFound);
  });

  it("refuses max_outstanding_messages out of 1–1000 and an empty consumer_id", async () => {
    const { subscriptionId } = await createSubscription(api);
    for (const request of [
      { subscriptionId, consumerId: "s1", maxOutstandingMessages: 0 },
      { subscriptionId, consumerId: "s1", maxOutstandingMessages: 1001 },
      { subscriptionId, consumerId: "" },
    ]) {
      const stream = openStream(api, request);
      const error = await stream.ended;
      expect(error?.code).toBe(Code.InvalidArgument);
      expect(error?.rawMessage).toMatch(/max_outstanding_messages|consumer_id/);
    }
  });
});

describe("streaming pull", () => {
  const api = () => createApi("grpc", server.url);

  it("keeps to max_outstanding_messages over several batches, counting only when the stream may be at its limit", async () => {
    const { topicId, subscriptionId } = await createSubscription(api());
    await api().topics.publishMessages({ topicId, messages: Array.from({ length: 400 }, (_, n) => ({ n })) });
    const stream = openStream(api(), { subscriptionId, consumerId: "s1", maxOutstandingMessages: 150 });
    await receivedAtLeast(stream, 150);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(stream.received).toHaveLength(150);
    await api().subscriptions.ackMessages({ subscriptionId, messageIds: stream.received.slice(0, 100).map((message) => message.id) });
    await receivedAtLeast(stream, 250);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(stream.received).toHaveLength(250);
    expect(new Set(stream.received.map((message) => message.id)).size).toBe(250);
    stream.cancel();
    await stream.ended;
  });

  it("refuses a stream beyond FASTPUBSUB_API_MAX_STREAMS with resource_exhausted", async () => {
    const { subscriptionId } = await createSubscription(api());
    const open = await gauge(server.url, "fastpubsub_streams_open");
    const streams = Array.from({ length: 40 - open }, (_, index) => openStream(api(), { subscriptionId, consumerId: `s${index}` }));
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_streams_open")) >= 40 ? true : undefined));
    const refused = openStream(api(), { subscriptionId, consumerId: "one-too-many" });
    const error = await refused.ended;
    expect(error?.code).toBe(Code.ResourceExhausted);
    expect(error?.rawMessage).toContain("FASTPUBSUB_API_MAX_STREAMS");
    for (const stream of streams) stream.cancel();
    await Promise.all(streams.map((stream) => stream.ended));
  });

  it("frees every waiter after a thousand streams opened and cancelled, and the heap does not grow with them", async () => {
    const client = api();
    const { subscriptionId } = await createSubscription(client);
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const heap = () => {
      gc();
      return process.memoryUsage().heapUsed;
    };
    const cycle = async (index: number) => {
      const stream = openStream(client, { subscriptionId, consumerId: `c${index}` });
      await new Promise((resolve) => setTimeout(resolve, 5));
      stream.cancel();
      await stream.ended;
    };
    const open = await gauge(server.url, "fastpubsub_streams_open");
    // A warm-up, so that what the first streams compile and cache is not counted.
    for (let index = 0; index < 400; index++) await cycle(index);
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_streams_open")) === open ? true : undefined));
    const before = heap();
    for (let batch = 0; batch < 50; batch++) await Promise.all(Array.from({ length: 20 }, (_, index) => cycle(batch * 20 + index)));
    await waitFor(async () => ((await gauge(server.url, "fastpubsub_streams_open")) === open ? true : undefined));
    const after = heap();
    // The client and the server share this heap: a leaked waiter, timer or listener per stream would keep
    // its request, context and closures (several kB each, so several MB for a thousand).
    expect(after - before).toBeLessThan(4 * 1024 * 1024);
  });

  it("ends every stream with unavailable when the server shuts down, promptly", async () => {
    const stopping = await startTestServer({ FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS: "30" });
    const stoppingApi = createApi("grpc", stopping.url);
    const { subscriptionId } = await createSubscription(stoppingApi);
    const streams = Array.from({ length: 3 }, (_, index) => openStream(stoppingApi, { subscriptionId, consumerId: `s${index}` }));
    await waitFor(async () => ((await gauge(stopping.url, "fastpubsub_streams_open")) >= 3 ? true : undefined));
    const started = performance.now();
    await stopping.close();
    const errors = await Promise.all(streams.map((stream) => stream.ended));
    expect(errors.map((error) => error?.code)).toEqual([Code.Unavailable, Code.Unavailable, Code.Unavailable]);
    // Not held for the 30 s shutdown timeout.
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});
