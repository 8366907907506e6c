import { fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCode } from "../support/expect-code.ts";
import { call as callHttp } from "../support/http.ts";
import { uniqueId } from "../support/ids.ts";
import { consume, metrics } from "../support/messages.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

let server: TestServer;
beforeAll(async () => {
  // The tests run the cleanups themselves, so the in-process ones stay off.
  server = await startTestServer({
    FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: "0",
    FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "0",
  });
});
afterAll(async () => {
  await server.close();
});

/** Creates a topic with subscriptions, each `{ id suffix: settings }`, and returns their ids. */
async function createTopic(
  api: Api,
  subscriptions: Record<string, { filter?: JsonValue; maxDeliveryAttempts?: number; backoff?: number }>,
) {
  const topicId = uniqueId("topic");
  await api.topics.createTopic({ id: topicId });
  const ids: Record<string, string> = {};
  for (const [name, settings] of Object.entries(subscriptions)) {
    ids[name] = uniqueId(name);
    await api.subscriptions.createSubscription({
      id: ids[name],
      topicId,
      filter: settings.filter === undefined ? undefined : fromJson(ValueSchema, settings.filter),
      maxDeliveryAttempts: settings.maxDeliveryAttempts,
      backoffMinSeconds: settings.backoff,
      backoffMaxSeconds: settings.backoff,
    });
  }
  return { topicId, ids };
}

describe.each(protocols)("messages over %s", (protocol) => {
  let api: Api;

  beforeAll(() => {
    api = createApi(protocol, server.url);
  });

  it("delivers published payloads exactly, with UUID ids, one attempt and the publish time", async () => {
    const { topicId, ids } = await createTopic(api, { all: {} });
    const payloads: JsonObject[] = [
      { event: "user.created", user_id: "123", country: "BR" },
      { text: '日本語 émoji 🎉 "quoted" <b>&amp;</b> \\ back\\slash', empty: "", zero: 0 },
      { nested: { deep: { list: [1, "two", true, null, { x: [] }] } }, flag: false, nothing: null },
      { big: 9007199254740991, negative: -12.5, tiny: 1e-7, exponent: 1.5e300 },
    ];
    const before = Date.now();
    await api.topics.publishMessages({ topicId, messages: payloads });
    const messages = await consume(api, ids.all as string);
    expect(messages.map((message) => message.payload)).toEqual(payloads);
    for (const message of messages) {
      expect(message.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(message.subscriptionId).toBe(ids.all);
      expect(message.deliveryAttempts).toBe(1);
      const createdAt = Number(message.createdAt?.seconds ?? 0) * 1000;
      expect(createdAt).toBeGreaterThanOrEqual(before - 5_000);
      expect(createdAt).toBeLessThanOrEqual(Date.now() + 5_000);
    }
    expect(new Set(messages.map((message) => message.id)).size).toBe(payloads.length);
  });

  it("answers not_found for a missing topic or subscription, and writes nothing", async () => {
    const error = await expectCode(api.topics.publishMessages({ topicId: uniqueId("none"), messages: [{ a: 1 }] }), Code.NotFound);
    expect(error.rawMessage).toBe("Topic not found");
    const missing = uniqueId("none");
    for (const call of [
      () => consume(api, missing),
      () => api.subscriptions.ackMessages({ subscriptionId: missing, messageIds: [] }),
      () => api.subscriptions.nackMessages({ subscriptionId: missing, messageIds: [] }),
      () => api.subscriptions.listDlqMessages({ subscriptionId: missing }),
      () => api.subscriptions.reprocessDlqMessages({ subscriptionId: missing, messageIds: [] }),
      () => api.subscriptions.getSubscriptionMetrics({ subscriptionId: missing }),
    ]) {
      expect((await expectCode(call(), Code.NotFound)).rawMessage).toBe("Subscription not found");
    }
  });

  it("routes each message to every subscription whose filter matches", async () => {
    const { topicId, ids } = await createTopic(api, {
      all: {},
      nullFilter: { filter: null },
      emptyFilter: { filter: {} },
      country: { filter: { country: ["BR", "US"] } },
      countryAndPremium: { filter: { country: ["BR"], premium: [true] } },
      numbers: { filter: { tier: [1, 2.5] } },
      textOfNumbers: { filter: { tier: ["1"] } },
      textOfBooleans: { filter: { premium: ["true"] } },
      nothing: { filter: { country: [] } },
    });
    const published: JsonObject[] = [
      { n: 1, country: "BR", premium: true, tier: 1 },
      { n: 2, country: "US", premium: false, tier: 2.5 },
      { n: 3, country: "JP", premium: true, tier: "1" },
      { n: 4 },
      { n: 5, country: "BR", premium: "true", tier: 3 },
    ];
    await api.topics.publishMessages({ topicId, messages: published });
    const received = async (name: string) => (await consume(api, ids[name] as string)).map((message) => message.payload?.n);
    expect(await received("all")).toEqual([1, 2, 3, 4, 5]);
    expect(await received("nullFilter")).toEqual([1, 2, 3, 4, 5]);
    expect(await received("emptyFilter")).toEqual([1, 2, 3, 4, 5]);
    // OR within a key's values; a message without the key is not excluded.
    expect(await received("country")).toEqual([1, 2, 4, 5]);
    // AND across keys; values compare by their text, so true matches "true".
    expect(await received("countryAndPremium")).toEqual([1, 4, 5]);
    expect(await received("numbers")).toEqual([1, 2, 3, 4]);
    expect(await received("textOfNumbers")).toEqual([1, 3, 4]);
    expect(await received("textOfBooleans")).toEqual([1, 3, 4, 5]);
    expect(await received("nothing")).toEqual([4]);
    expect(await metrics(api, ids.country as string)).toEqual({ available: 0, delivered: 4, acked: 0, dlq: 0 });
  });

  it("honours batch_size, ten by default, and delivers earlier publishes first", async () => {
    const { topicId, ids } = await createTopic(api, { s: {} });
    const subscriptionId = ids.s as string;
    await api.topics.publishMessages({ topicId, messages: Array.from({ length: 15 }, (_, n) => ({ n })) });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await api.topics.publishMessages({ topicId, messages: Array.from({ length: 10 }, (_, n) => ({ n: 15 + n })) });
    const numbers = (messages: { payload?: { n?: unknown } }[]) => messages.map((message) => Number(message.payload?.n));
    const first = numbers((await api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w" })).data);
    expect(first).toHaveLength(10);
    expect(Math.max(...first)).toBeLessThan(15);
    const second = numbers(await consume(api, subscriptionId, 1));
    expect(second).toHaveLength(1);
    const rest = numbers(await consume(api, subscriptionId, 100));
    expect(rest).toHaveLength(14);
    expect([...first, ...second, ...rest].sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, n) => n));
    expect(rest.slice(-10).sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, n) => 15 + n));
    expect(await consume(api, subscriptionId)).toEqual([]);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 25, acked: 0, dlq: 0 });
  });

  it("acks delivered messages, and counts them", async () => {
    const { topicId, ids } = await createTopic(api, { s: {} });
    const subscriptionId = ids.s as string;
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }, { n: 2 }, { n: 3 }] });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 3, delivered: 0, acked: 0, dlq: 0 });
    const delivered = await consume(api, subscriptionId, 2);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 2, acked: 0, dlq: 0 });
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: delivered.map((message) => message.id) });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 0, acked: 2, dlq: 0 });
    // Acking again changes nothing.
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: delivered.map((message) => message.id) });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 0, acked: 2, dlq: 0 });
    expect((await consume(api, subscriptionId)).map((message) => message.payload?.n)).toEqual([3]);
  });

  it("lets acks and nacks of unknown, undelivered or foreign ids change nothing", async () => {
    const { topicId, ids } = await createTopic(api, { mine: {}, other: {} });
    const mine = ids.mine as string;
    const other = ids.other as string;
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }, { n: 2 }] });
    const [delivered] = await consume(api, mine, 1);
    const [othersDelivered] = await consume(api, other, 1);
    const foreign = othersDelivered?.id as string;
    const unknown = ["550e8400-e29b-41d4-a716-446655440000", "01a21293-b67b-8000-8000-7fffffffffff"];
    for (const messageIds of [unknown, [foreign]]) {
      await api.subscriptions.ackMessages({ subscriptionId: mine, messageIds });
      await api.subscriptions.nackMessages({ subscriptionId: mine, messageIds });
      await api.subscriptions.reprocessDlqMessages({ subscriptionId: mine, messageIds });
    }
    expect(await metrics(api, mine)).toEqual({ available: 1, delivered: 1, acked: 0, dlq: 0 });
    expect(await metrics(api, other)).toEqual({ available: 1, delivered: 1, acked: 0, dlq: 0 });
    // The other subscription's copy of the same message is still delivered and ackable there.
    await api.subscriptions.ackMessages({ subscriptionId: other, messageIds: [foreign] });
    expect(await metrics(api, other)).toEqual({ available: 1, delivered: 0, acked: 1, dlq: 0 });
    // An undelivered message cannot be acked before it is consumed.
    const [next] = await consume(api, mine, 1);
    await api.subscriptions.ackMessages({ subscriptionId: mine, messageIds: [delivered?.id as string, next?.id as string] });
    expect(await metrics(api, mine)).toEqual({ available: 0, delivered: 0, acked: 2, dlq: 0 });
  });

  it("redelivers a nacked message after the backoff, with one more attempt", async () => {
    const { topicId, ids } = await createTopic(api, { s: { backoff: 1, maxDeliveryAttempts: 5 } });
    const subscriptionId = ids.s as string;
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }] });
    const [first] = await consume(api, subscriptionId);
    // Taken before the nack, so that the time until the redelivery can only be longer than measured.
    const nackedAt = Date.now();
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [first?.id as string] });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 0, acked: 0, dlq: 0 });
    expect(await consume(api, subscriptionId)).toEqual([]);
    const [again] = await waitFor(async () => {
      const messages = await consume(api, subscriptionId);
      return messages.length > 0 ? messages : undefined;
    });
    expect(Date.now() - nackedAt).toBeGreaterThanOrEqual(900);
    expect(again?.id).toBe(first?.id);
    expect(again?.deliveryAttempts).toBe(2);
    expect(again?.payload).toEqual({ n: 1 });
  });

  it("dead-letters a message nacked max_delivery_attempts times, and reprocesses it with attempts reset", async () => {
    const { topicId, ids } = await createTopic(api, { s: { backoff: 1, maxDeliveryAttempts: 2 } });
    const subscriptionId = ids.s as string;
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }, { n: 2 }] });
    const firstRound = await consume(api, subscriptionId, 1);
    const id = firstRound[0]?.id as string;
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id] });
    const secondRound = await waitFor(async () => {
      const messages = (await consume(api, subscriptionId)).filter((message) => message.id === id);
      return messages.length > 0 ? messages : undefined;
    });
    expect(secondRound[0]?.deliveryAttempts).toBe(2);
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id] });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 1, acked: 0, dlq: 1 });

    const dlq = await api.subscriptions.listDlqMessages({ subscriptionId });
    expect(dlq.data).toHaveLength(1);
    expect(dlq.data[0]).toMatchObject({ id, subscriptionId, payload: { n: 1 }, deliveryAttempts: 2 });
    expect((await api.subscriptions.listDlqMessages({ subscriptionId, offset: 1 })).data).toEqual([]);
    expect(await consume(api, subscriptionId)).toEqual([]);

    await api.subscriptions.reprocessDlqMessages({ subscriptionId, messageIds: [id] });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 1, acked: 0, dlq: 0 });
    expect((await api.subscriptions.listDlqMessages({ subscriptionId })).data).toEqual([]);
    const [revived] = await consume(api, subscriptionId);
    expect(revived).toMatchObject({ id, payload: { n: 1 }, deliveryAttempts: 1 });
  });

  it("refuses malformed requests with invalid_argument and changes nothing", async () => {
    const { topicId, ids } = await createTopic(api, { s: {} });
    const subscriptionId = ids.s as string;
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }] });
    const [delivered] = await consume(api, subscriptionId);
    const id = delivered?.id as string;
    const invalid = [
      [
        "a batch_size of 0",
        () => api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w", batchSize: 0 }),
        /^batch_size must be between 1 and 100/,
      ],
      [
        "a batch_size of 101",
        () => api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w", batchSize: 101 }),
        /^batch_size must be/,
      ],
      ["no consumer_id", () => api.subscriptions.consumeMessages({ subscriptionId, batchSize: 1 }), /^consumer_id is required/],
      [
        "an ack with an invalid id",
        () => api.subscriptions.ackMessages({ subscriptionId, messageIds: [id, "not-a-uuid"] }),
        /^message_ids has an item/,
      ],
      [
        "a nack with an invalid id",
        () => api.subscriptions.nackMessages({ subscriptionId, messageIds: ["123", id] }),
        /^message_ids has an item/,
      ],
      [
        "a reprocess with an invalid id",
        () => api.subscriptions.reprocessDlqMessages({ subscriptionId, messageIds: ["x"] }),
        /^message_ids/,
      ],
      [
        "1001 acks at once",
        () => api.subscriptions.ackMessages({ subscriptionId, messageIds: Array(1001).fill(id) }),
        /^message_ids must have at most 1000/,
      ],
      [
        "1001 messages at once",
        () => api.topics.publishMessages({ topicId, messages: Array(1001).fill({ n: 2 }) }),
        /^messages must have at most 1000/,
      ],
      ["a DLQ limit of 0", () => api.subscriptions.listDlqMessages({ subscriptionId, limit: 0 }), /^limit must be/],
      ["a negative DLQ offset", () => api.subscriptions.listDlqMessages({ subscriptionId, offset: -1 }), /^offset must be/],
    ] as const;
    for (const [what, call, message] of invalid) {
      const error = await expectCode(call(), Code.InvalidArgument);
      expect(error.rawMessage, what).toMatch(message);
    }
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 1, acked: 0, dlq: 0 });
  });

  it("never gives the same message to two of four concurrent consumers", async () => {
    const { topicId, ids } = await createTopic(api, { s: {} });
    const subscriptionId = ids.s as string;
    const total = 600;
    for (let start = 0; start < total; start += 200) {
      await api.topics.publishMessages({ topicId, messages: Array.from({ length: 200 }, (_, n) => ({ n: start + n })) });
    }
    const seen = new Map<string, string>();
    await Promise.all(
      ["w1", "w2", "w3", "w4"].map(async (consumerId) => {
        for (;;) {
          const messages = await consume(api, subscriptionId, 7, consumerId);
          if (messages.length === 0) return;
          for (const message of messages) {
            expect(seen.get(message.id), `${message.id} went to two consumers`).toBeUndefined();
            seen.set(message.id, consumerId);
          }
        }
      }),
    );
    expect(seen.size).toBe(total);
    expect(new Set(seen.values()).size).toBeGreaterThan(1);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: total, acked: 0, dlq: 0 });
  });
});

// The test above consumes what was published before; this one publishes while four consumers consume and ack.
describe("2,000 messages published while consumed over grpc", () => {
  it("are consumed and acked by four concurrent consumers, none lost or duplicated, and counted as acked", async () => {
    const api = createApi("grpc", server.url);
    const { topicId, ids } = await createTopic(api, { s: {} });
    const subscriptionId = ids.s as string;
    const total = 2_000;
    const publishing = (async () => {
      for (let start = 0; start < total; start += 100) {
        await api.topics.publishMessages({ topicId, messages: Array.from({ length: 100 }, (_, n) => ({ n: start + n })) });
      }
    })();
    const received: number[] = [];
    let published = false;
    // Set however the publishing ends, so that the consumers end too; `await publishing` below reports a failure.
    const finished = () => {
      published = true;
    };
    void publishing.then(finished, finished);
    await Promise.all(
      ["w1", "w2", "w3", "w4"].map(async (consumerId) => {
        for (;;) {
          const data = await consume(api, subscriptionId, 100, consumerId);
          if (data.length === 0) {
            if (published && received.length >= total) return;
            if (published && (await metrics(api, subscriptionId)).available === 0) return;
            await new Promise((resolve) => setTimeout(resolve, 5));
            continue;
          }
          await api.subscriptions.ackMessages({ subscriptionId, messageIds: data.map((message) => message.id) });
          for (const message of data) received.push(Number(message.payload?.n));
        }
      }),
    );
    await publishing;
    expect(received).toHaveLength(total);
    expect(new Set(received).size).toBe(total);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: total, dlq: 0 });
  });
});

describe("REST message paths", () => {
  const call = (method: string, path: string, body?: unknown) => callHttp(server.url, method, path, body);

  it("answer with the seed's status codes and bodies", async () => {
    const api = createApi("rest", server.url);
    const { topicId, ids } = await createTopic(api, { s: {} });
    const subscriptionId = ids.s as string;
    expect(await call("POST", `/topics/${topicId}/messages`, [{ a: 1 }, { b: "2" }])).toMatchObject({ status: 204, text: "" });
    const consumed = await call("GET", `/subscriptions/${subscriptionId}/messages?consumer_id=w1&batch_size=1`);
    expect(consumed.status).toBe(200);
    const data = (consumed.json as { data: Record<string, unknown>[] }).data;
    expect(Object.keys(consumed.json as object)).toEqual(["data"]);
    expect(data).toHaveLength(1);
    expect(Object.keys(data[0] as object).sort()).toEqual(["created_at", "delivery_attempts", "id", "payload", "subscription_id"]);
    expect(data[0]).toMatchObject({ subscription_id: subscriptionId, payload: { a: 1 }, delivery_attempts: 1 });
    expect(await call("POST", `/subscriptions/${subscriptionId}/acks`, [data[0]?.id])).toMatchObject({ status: 204, text: "" });
    expect(await call("POST", `/subscriptions/${subscriptionId}/nacks`, [])).toMatchObject({ status: 204, text: "" });
    expect(await call("GET", `/subscriptions/${subscriptionId}/dlq?offset=0&limit=10`)).toMatchObject({ status: 200, json: { data: [] } });
    expect(await call("POST", `/subscriptions/${subscriptionId}/dlq/reprocess`, [])).toMatchObject({ status: 204, text: "" });
    expect(await call("GET", `/subscriptions/${subscriptionId}/metrics`)).toMatchObject({
      status: 200,
      json: { subscription_id: subscriptionId, available: 1, delivered: 0, acked: 1, dlq: 0 },
    });
  });

  it("refuse malformed bodies and parameters with 422 and publish nothing", async () => {
    const api = createApi("rest", server.url);
    const { topicId, ids } = await createTopic(api, { s: {} });
    const subscriptionId = ids.s as string;
    const refused = [
      ["POST", `/topics/${topicId}/messages`, "[{]"],
      ["POST", `/topics/${topicId}/messages`, { a: 1 }],
      ["POST", `/topics/${topicId}/messages`, [{ a: 1 }, 2]],
      ["POST", `/topics/${topicId}/messages`, [{ a: 1 }, "text"]],
      ["POST", `/topics/${topicId}/messages`, [{ a: 1 }, [1]]],
      ["POST", `/topics/${topicId}/messages`, [{ a: 1 }, null]],
      ["POST", `/topics/${topicId}/messages`, undefined],
      ["POST", `/subscriptions/${subscriptionId}/acks`, ["not-a-uuid"]],
      ["POST", `/subscriptions/${subscriptionId}/acks`, { ids: [] }],
      ["POST", `/subscriptions/${subscriptionId}/nacks`, [42]],
      ["POST", `/subscriptions/${subscriptionId}/dlq/reprocess`, "nope"],
      ["GET", `/subscriptions/${subscriptionId}/messages`, undefined],
      ["GET", `/subscriptions/${subscriptionId}/messages?consumer_id=&batch_size=5`, undefined],
      ["GET", `/subscriptions/${subscriptionId}/messages?consumer_id=w&batch_size=0`, undefined],
      ["GET", `/subscriptions/${subscriptionId}/messages?consumer_id=w&batch_size=many`, undefined],
      ["GET", `/subscriptions/${subscriptionId}/dlq?limit=101`, undefined],
    ] as const;
    for (const [method, path, body] of refused) {
      const answer = await call(method, path, body);
      expect(answer.status, `${method} ${path} ${JSON.stringify(body)}`).toBe(422);
      expect(answer.json).toEqual({ detail: expect.any(String) });
    }
    expect(await call("GET", `/subscriptions/${subscriptionId}/metrics`)).toMatchObject({
      json: { available: 0, delivered: 0, acked: 0, dlq: 0 },
    });
  });

  it("refuse a body over 16 MiB with 413", async () => {
    const api = createApi("rest", server.url);
    const { topicId, ids } = await createTopic(api, { s: {} });
    const huge = JSON.stringify([{ blob: "x".repeat(17 * 1024 * 1024) }]);
    const answer = await call("POST", `/topics/${topicId}/messages`, huge);
    expect(answer).toMatchObject({ status: 413, json: { detail: expect.stringContaining("larger than") } });
    expect(await call("GET", `/subscriptions/${ids.s}/metrics`)).toMatchObject({ json: { available: 0 } });
  });
});
