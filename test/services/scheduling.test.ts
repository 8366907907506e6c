import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Message } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { type ServerProcess, startServerProcess } from "../support/cli.ts";
import { databaseChecksum } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { gauge } from "../support/gauges.ts";
import { uniqueId } from "../support/ids.ts";
import { consume, metrics } from "../support/messages.ts";
import { type Api, createApi, type Protocol, protocols } from "../support/protocols.ts";
import { quietJobs, startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

// `quiet` runs no background job, so that the refusals can be checked against table checksums.
let server: TestServer;
let other: ServerProcess;
let quiet: TestServer;
let quietDb: pg.Client;
beforeAll(async () => {
  [server, quiet] = await Promise.all([startTestServer(), startTestServer(quietJobs)]);
  // A second server process on the same database: it hears this one's publishes only through PostgreSQL.
  other = await startServerProcess({ FASTPUBSUB_DATABASE_URL: server.databaseUrl });
  quietDb = new pg.Client({ connectionString: quiet.databaseUrl });
  await quietDb.connect();
});
afterAll(async () => {
  await quietDb?.end();
  await other?.stop();
  await Promise.all([server?.close(), quiet?.close()]);
});

async function createSubscription(api: Api) {
  const topicId = uniqueId("topic");
  const subscriptionId = uniqueId("sub");
  await api.topics.createTopic({ id: topicId });
  await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
  return { topicId, subscriptionId };
}

const payloads = (messages: Message[]) => messages.map((message) => message.payload);

// A delay is counted from the publish; a waiter is woken by a timer, or at worst by the fallback check a second later.
const delayMs = 2_000;
const lateMs = 2_500;

describe.each(protocols)("delayed publish over %s", (protocol) => {
  let api: Api;
  let otherApi: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
    otherApi = createApi(protocol, other.url);
  });

  it("stores a delayed message as available, gives it to no consumer before its time, and wakes a long-poll when it is due", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    const started = Date.now();
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }], delaySeconds: delayMs / 1000 });
    await api.topics.publishMessages({ topicId, messages: [{ n: 0 }] });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 2, delivered: 0, acked: 0, dlq: 0 });
    expect(payloads(await consume(api, subscriptionId))).toEqual([{ n: 0 }]);
    const { data } = await api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", batchSize: 10, waitSeconds: 10 });
    const elapsed = Date.now() - started;
    expect(payloads(data)).toEqual([{ n: 1 }]);
    expect(elapsed).toBeGreaterThanOrEqual(delayMs - 50);
    expect(elapsed).toBeLessThan(delayMs + lateMs);
  });

  it("keeps messages until deliver_at, and takes a deliver_at up to a minute in the past as now", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    const started = Date.now();
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }, { n: 2 }], deliverAt: timestampFromMs(started + delayMs) });
    await api.topics.publishMessages({ topicId, messages: [{ n: 0 }], deliverAt: timestampFromMs(started - 50_000) });
    expect(payloads(await consume(api, subscriptionId))).toEqual([{ n: 0 }]);
    const { data } = await api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", batchSize: 10, waitSeconds: 10 });
    expect(payloads(data)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(delayMs - 50);
    expect(Date.now() - started).toBeLessThan(delayMs + lateMs);
  });

  it("wakes a long-poll on another server when a message published through this one is due", async () => {
    const { topicId, subscriptionId } = await createSubscription(api);
    const polling = otherApi.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", waitSeconds: 10 });
    await waitFor(async () => ((await gauge(other.url, "fastpubsub_long_polls_waiting")) >= 1 ? true : undefined));
    const started = Date.now();
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }], delaySeconds: delayMs / 1000 });
    const { data } = await polling;
    expect(payloads(data)).toEqual([{ n: 1 }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(delayMs - 50);
    expect(Date.now() - started).toBeLessThan(delayMs + lateMs);
  });
});

const streamingProtocols = ["connect-json", "connect-binary", "grpc", "grpc-web"] as const satisfies Protocol[];

describe.each(streamingProtocols)("delayed publish to a stream over %s", (protocol) => {
  it("sends a delayed message to an open stream when it is due, not before", async () => {
    const api = createApi(protocol, server.url);
    const { topicId, subscriptionId } = await createSubscription(api);
    const controller = new AbortController();
    const received: { payload: unknown; atMs: number }[] = [];
    const ended = (async () => {
      try {
        for await (const response of api.subscriptions.streamMessages(
          { subscriptionId, consumerId: "s1" },
          { signal: controller.signal },
        )) {
          for (const message of response.data) received.push({ payload: message.payload, atMs: Date.now() });
        }
      } catch {
        // Cancelled.
      }
    })();
    const started = Date.now();
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }], delaySeconds: delayMs / 1000 });
    await api.topics.publishMessages({ topicId, messages: [{ n: 0 }] });
    await waitFor(async () => (received.length >= 2 ? true : undefined), 10_000, "both messages on the stream");
    controller.abort();
    await ended;
    expect(received.map((entry) => entry.payload)).toEqual([{ n: 0 }, { n: 1 }]);
    const dueAfter = (received[1]?.atMs ?? 0) - started;
    expect(dueAfter).toBeGreaterThanOrEqual(delayMs - 50);
    expect(dueAfter).toBeLessThan(delayMs + lateMs);
  });
});

describe.each(protocols)("delayed publish's bad input over %s", (protocol) => {
  let api: Api;
  let topicId: string;
  beforeAll(async () => {
    api = createApi(protocol, quiet.url);
    ({ topicId } = await createSubscription(api));
  });

  /** Expects a publish to be refused as invalid_argument, naming `reason`, with no table changed. */
  async function expectRefused(request: Parameters<Api["topics"]["publishMessages"]>[0], reason: RegExp) {
    const before = await databaseChecksum(quietDb);
    const error = await expectCode(api.topics.publishMessages(request), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(reason);
    expect(await databaseChecksum(quietDb)).toEqual(before);
  }

  it("refuses delay_seconds with deliver_at, a deliver_at out of range and a delay_seconds out of range, writing nothing", async () => {
    const now = Date.now();
    const messages = [{ n: 1 }];
    await expectRefused({ topicId, messages, delaySeconds: 5, deliverAt: timestampFromMs(now + 5_000) }, /^delay_seconds and deliver_at/);
    await expectRefused({ topicId, messages, deliverAt: timestampFromMs(now - 120_000) }, /^deliver_at must be/);
    await expectRefused({ topicId, messages, deliverAt: timestampFromMs(now + 366 * 86_400_000) }, /^deliver_at must be/);
    await expectRefused({ topicId, messages, delaySeconds: 31_536_001 }, /^delay_seconds must be between 0 and 31536000/);
    await expectRefused({ topicId, messages, delaySeconds: -1 }, /^delay_seconds must be between 0 and 31536000/);
  });

  it("accepts the edges: delay_seconds 0 (at once) and 31536000, deliver_at almost a year ahead", async () => {
    const { topicId: edgeTopic, subscriptionId } = await createSubscription(api);
    await api.topics.publishMessages({ topicId: edgeTopic, messages: [{ n: 0 }], delaySeconds: 0 });
    await api.topics.publishMessages({ topicId: edgeTopic, messages: [{ n: 1 }], delaySeconds: 31_536_000 });
    await api.topics.publishMessages({
      topicId: edgeTopic,
      messages: [{ n: 2 }],
      deliverAt: timestampFromMs(Date.now() + 364 * 86_400_000),
    });
    expect(payloads(await consume(api, subscriptionId))).toEqual([{ n: 0 }]);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 2, delivered: 1, acked: 0, dlq: 0 });
  });
});

describe("deliver_at in the REST query string", () => {
  it("takes RFC 3339, and refuses other text with 422, writing nothing", async () => {
    const api = createApi("rest", quiet.url);
    const { topicId, subscriptionId } = await createSubscription(api);
    const post = (query: string) =>
      fetch(new URL(`/topics/${topicId}/messages?${query}`, quiet.url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify([{ n: 1 }]),
      });
    const before = await databaseChecksum(quietDb);
    for (const bad of ["deliver_at=tomorrow", "deliver_at=2026-13-01T00:00:00Z", "deliver_at=2020-01-01T00:00:00Z&delay_seconds=1"]) {
      const response = await post(bad);
      expect(response.status, bad).toBe(422);
      expect(Object.keys((await response.json()) as object)).toEqual(["detail"]);
    }
    expect(await databaseChecksum(quietDb)).toEqual(before);
    const at = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, "Z");
    expect((await post(`deliver_at=${encodeURIComponent(at)}`)).status).toBe(204);
    expect((await post("delay_seconds=60")).status).toBe(204);
    expect(await consume(api, subscriptionId)).toEqual([]);
    expect(await metrics(api, subscriptionId)).toMatchObject({ available: 2 });
  });
});
