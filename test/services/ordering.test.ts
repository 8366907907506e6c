import { setTimeout as sleep } from "node:timers/promises";
import type { JsonObject } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Message } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { databaseChecksum } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { uniqueId } from "../support/ids.ts";
import { consume, metrics } from "../support/messages.ts";
import { type Api, createApi, type Protocol, protocols } from "../support/protocols.ts";
import { createTestDatabase, quietJobs, startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

// `server` expires leases every second, as a server does by default; `quiet` runs no background
// job, so that the refusals can be checked against table checksums.
let server: TestServer;
let quiet: TestServer;
let quietDb: pg.Client;
beforeAll(async () => {
  [server, quiet] = await Promise.all([startTestServer(), startTestServer(quietJobs)]);
  quietDb = new pg.Client({ connectionString: quiet.databaseUrl });
  await quietDb.connect();
});
afterAll(async () => {
  await quietDb?.end();
  await Promise.all([server?.close(), quiet?.close()]);
});

interface Settings {
  ackDeadlineSeconds?: number;
  maxDeliveryAttempts?: number;
}

/** Creates a topic with one subscription ordered by payload key `k`. */
async function orderedSubscription(api: Api, settings: Settings = {}) {
  const topicId = uniqueId("topic");
  const subscriptionId = uniqueId("ordered");
  await api.topics.createTopic({ id: topicId });
  await api.subscriptions.createSubscription({
    id: subscriptionId,
    topicId,
    orderingKey: "k",
    backoffMinSeconds: 1,
    backoffMaxSeconds: 1,
    maxDeliveryAttempts: settings.maxDeliveryAttempts ?? 50,
    ackDeadlineSeconds: settings.ackDeadlineSeconds,
  });
  return { topicId, subscriptionId };
}

const numbers = (messages: Message[]) => messages.map((message) => (message.payload as { n: number }).n);
const idOf = (messages: Message[], n: number) => messages.find((message) => (message.payload as { n: number }).n === n)?.id as string;

/** A small deterministic random number generator, so that a failing run can be replayed. */
function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * Watches deliveries of an ordered subscription as consumers see them: per ordering value, the
 * sequence numbers delivered (in the order seen), and every delivery of a value while another
 * message of it was still out.
 */
function createWatch() {
  const delivered = new Map<string, number[]>();
  const outstanding = new Map<string, number>();
  const overlaps: string[] = [];
  return {
    delivered,
    overlaps,
    /** Records a delivery; returns whether the message has an ordering value. */
    saw(message: Message) {
      const { k, seq } = message.payload as { k?: string; seq: number };
      if (k === undefined) return false;
      const out = outstanding.get(k);
      if (out !== undefined && out !== seq) overlaps.push(`${k}: ${seq} delivered while ${out} was out`);
      outstanding.set(k, seq);
      delivered.set(k, [...(delivered.get(k) ?? []), seq]);
      return true;
    },
    /** Forgets a delivery that the consumer is about to settle (ack or nack). */
    settling(message: Message) {
      const { k } = message.payload as { k?: string };
      if (k !== undefined) outstanding.delete(k);
    },
  };
}

/** Checks that each value's messages were delivered in publish order: each sequence number after the last, or the last again (a redelivery). */
function expectInOrder(delivered: Map<string, number[]>, values: number, perValue: number) {
  expect(delivered.size).toBe(values);
  for (const [value, seqs] of delivered) {
    for (const [index, seq] of seqs.entries()) {
      const previous = index === 0 ? -1 : (seqs[index - 1] as number);
      expect(seq - previous === 0 || seq - previous === 1, `${value}: ${seqs.join(",")}`).toBe(true);
    }
    expect([...new Set(seqs)], value).toEqual(Array.from({ length: perValue }, (_, n) => n));
  }
}

describe.each(protocols)("ordered subscriptions over %s", (protocol) => {
  let api: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
  });

  it("shows ordering_key on create, get and list, and none on an unordered subscription", async () => {
    const { topicId, subscriptionId } = await orderedSubscription(api);
    expect((await api.subscriptions.getSubscription({ id: subscriptionId })).orderingKey).toBe("k");
    const plain = await api.subscriptions.createSubscription({ id: uniqueId("plain"), topicId });
    expect(plain.orderingKey).toBeUndefined();
    const listed = (await api.subscriptions.listSubscriptions({ limit: 100 })).data.find((entry) => entry.id === subscriptionId);
    expect(listed?.orderingKey).toBe("k");
  });

  it("delivers one message per value at a time, in publish order; messages without the key and other values flow in parallel", async () => {
    const { topicId, subscriptionId } = await orderedSubscription(api);
    await api.topics.publishMessages({
      topicId,
      messages: [
        { k: "a", n: 1 },
        { k: "a", n: 2 },
        { k: "b", n: 3 },
        { n: 4 },
        { k: "a", n: 5 },
        { k: 1, n: 6 },
        { k: "1", n: 7 },
        { n: 8 },
      ],
    });
    const first = await consume(api, subscriptionId);
    expect(numbers(first)).toEqual([1, 3, 4, 6, 8]);
    expect(await consume(api, subscriptionId)).toEqual([]);
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [idOf(first, 1), idOf(first, 6)] });
    const second = await consume(api, subscriptionId);
    expect(numbers(second)).toEqual([2, 7]);
    // A nacked head blocks its value until it is redelivered (after the backoff) and settled.
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [idOf(second, 2)] });
    expect(await consume(api, subscriptionId)).toEqual([]);
    const again = await waitFor(async () => {
      const batch = await consume(api, subscriptionId);
      return batch.length > 0 ? batch : undefined;
    });
    expect(again.map((message) => [(message.payload as { n: number }).n, message.deliveryAttempts])).toEqual([[2, 2]]);
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [idOf(again, 2)] });
    expect(numbers(await consume(api, subscriptionId))).toEqual([5]);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 5, acked: 3, dlq: 0 });
  });

  it("leaves an unordered subscription of the same topic as it was: every message at once", async () => {
    const { topicId } = await orderedSubscription(api);
    const plain = uniqueId("plain");
    await api.subscriptions.createSubscription({ id: plain, topicId });
    await api.topics.publishMessages({ topicId, messages: [{ k: "a", n: 1 }, { k: "a", n: 2 }, { n: 3 }] });
    expect(numbers(await consume(api, plain))).toEqual([1, 2, 3]);
  });

  it("unblocks a value when its head is dead-lettered", async () => {
    const { topicId, subscriptionId } = await orderedSubscription(api, { maxDeliveryAttempts: 1 });
    await api.topics.publishMessages({
      topicId,
      messages: [
        { k: "a", n: 1 },
        { k: "a", n: 2 },
      ],
    });
    const first = await consume(api, subscriptionId);
    expect(numbers(first)).toEqual([1]);
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [idOf(first, 1)] });
    expect(numbers(await consume(api, subscriptionId))).toEqual([2]);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 1, acked: 0, dlq: 1 });
  });

  // Needs the dead-letter functions to carry messages.ordering_hash to dead_letters and back (wired
  // in at the merge with migration 0011, which restates them); until then a reprocessed message of an
  // ordered subscription has no ordering hash, and no consume finds it.
  it("puts a reprocessed dead letter back at its place in its value's order", async () => {
    const { topicId, subscriptionId } = await orderedSubscription(api, { maxDeliveryAttempts: 1 });
    await api.topics.publishMessages({
      topicId,
      messages: [
        { k: "a", n: 1 },
        { k: "a", n: 2 },
        { k: "a", n: 3 },
      ],
    });
    const first = await consume(api, subscriptionId);
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [idOf(first, 1)] });
    const second = await consume(api, subscriptionId);
    expect(numbers(second)).toEqual([2]);
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [idOf(second, 2)] });
    await api.subscriptions.reprocessDlqMessages({ subscriptionId, messageIds: [idOf(first, 1)] });
    const revived = await consume(api, subscriptionId);
    expect(numbers(revived)).toEqual([1]);
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [idOf(revived, 1)] });
    expect(numbers(await consume(api, subscriptionId))).toEqual([3]);
  });

  it("redelivers a head whose lease expired before the next message of its value", async () => {
    const { topicId, subscriptionId } = await orderedSubscription(api, { ackDeadlineSeconds: 1 });
    await api.topics.publishMessages({
      topicId,
      messages: [
        { k: "a", n: 1 },
        { k: "a", n: 2 },
      ],
    });
    const first = await consume(api, subscriptionId);
    expect(numbers(first)).toEqual([1]);
    const again = await waitFor(async () => {
      const batch = await consume(api, subscriptionId);
      return batch.length > 0 ? batch : undefined;
    }, 15_000);
    expect(again.map((message) => [(message.payload as { n: number }).n, message.deliveryAttempts])).toEqual([[1, 2]]);
  });

  it("keeps publish order across calls, and a delayed head holds back its value until it is delivered and acked", async () => {
    const { topicId, subscriptionId } = await orderedSubscription(api);
    await api.topics.publishMessages({ topicId, messages: [{ k: "a", n: 1 }], delaySeconds: 1 });
    await api.topics.publishMessages({
      topicId,
      messages: [
        { k: "a", n: 2 },
        { k: "b", n: 3 },
      ],
    });
    await api.topics.publishMessages({ topicId, messages: [{ k: "b", n: 4 }] });
    expect(numbers(await consume(api, subscriptionId))).toEqual([3]);
    const head = await api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w1", batchSize: 10, waitSeconds: 5 });
    expect(numbers(head.data)).toEqual([1]);
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [idOf(head.data, 1)] });
    expect(numbers(await consume(api, subscriptionId))).toEqual([2]);
  });
});

describe.each(["rest", "connect-binary", "grpc"] as const satisfies Protocol[])("ordering under concurrency over %s", (protocol) => {
  it("keeps each value's delivered sequence in publish order under 4 consumers that nack, let leases expire and ack", async () => {
    const api = createApi(protocol, server.url);
    const { topicId, subscriptionId } = await orderedSubscription(api, { ackDeadlineSeconds: 2 });
    const values = 8;
    const perValue = 6;
    const calls = 3;
    // Each call publishes the next two messages of every value, interleaved, and two without the key.
    for (let call = 0; call < calls; call++) {
      const messages: JsonObject[] = [];
      for (let step = 0; step < perValue / calls; step++) {
        for (let value = 0; value < values; value++) messages.push({ k: `v${value}`, seq: call * (perValue / calls) + step });
        messages.push({ seq: -1, call });
      }
      await api.topics.publishMessages({ topicId, messages });
    }
    const total = values * perValue + calls * (perValue / calls);
    const watch = createWatch();
    let done = false;
    const consumer = async (index: number) => {
      const next = random(index + 1);
      while (!done) {
        const { data } = await api.subscriptions.consumeMessages({ subscriptionId, consumerId: `c${index}`, batchSize: 5, waitSeconds: 1 });
        const acks: string[] = [];
        const nacks: string[] = [];
        for (const message of data) {
          watch.saw(message);
          const roll = message.deliveryAttempts >= 3 ? 1 : next();
          if (roll < 0.15) {
            watch.settling(message);
            nacks.push(message.id);
          } else if (roll >= 0.25) {
            watch.settling(message);
            acks.push(message.id);
          }
          // Else it is left to expire, and must come back before the next of its value.
        }
        if (nacks.length > 0) await api.subscriptions.nackMessages({ subscriptionId, messageIds: nacks });
        if (acks.length > 0) await api.subscriptions.ackMessages({ subscriptionId, messageIds: acks });
      }
    };
    const consumers = Array.from({ length: 4 }, (_, index) => consumer(index));
    try {
      await waitFor(async () => ((await metrics(api, subscriptionId)).acked >= total ? true : undefined), 90_000, "every message acked");
    } finally {
      done = true;
      await Promise.all(consumers);
    }
    expect(watch.overlaps).toEqual([]);
    expectInOrder(watch.delivered, values, perValue);
    // Nacks and expired leases did bring messages back.
    expect([...watch.delivered.values()].flat().length).toBeGreaterThan(values * perValue + 5);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: total, dlq: 0 });
  }, 120_000);
});

const streamingProtocols = ["connect-json", "connect-binary", "grpc", "grpc-web"] as const satisfies Protocol[];

describe.each(streamingProtocols)("ordered streams over %s", (protocol) => {
  it("give two streams one message per value at a time, in publish order, as acks arrive", async () => {
    const api = createApi(protocol, server.url);
    const { topicId, subscriptionId } = await orderedSubscription(api);
    const values = 4;
    const perValue = 5;
    const messages = Array.from({ length: perValue }, (_, seq) =>
      Array.from({ length: values }, (_, value) => ({ k: `v${value}`, seq })),
    ).flat();
    await api.topics.publishMessages({ topicId, messages });
    const watch = createWatch();
    const controller = new AbortController();
    const streams = ["s1", "s2"].map(async (consumerId) => {
      try {
        for await (const response of api.subscriptions.streamMessages(
          { subscriptionId, consumerId, maxOutstandingMessages: 10 },
          { signal: controller.signal },
        )) {
          for (const message of response.data) {
            watch.saw(message);
            // Acked a little later, so that a second message of its value would have the time to come.
            void sleep(30).then(() => {
              watch.settling(message);
              return api.subscriptions.ackMessages({ subscriptionId, messageIds: [message.id] });
            });
          }
        }
      } catch {
        // Cancelled.
      }
    });
    try {
      await waitFor(async () => ((await metrics(api, subscriptionId)).acked >= values * perValue ? true : undefined), 30_000);
    } finally {
      controller.abort();
      await Promise.all(streams);
    }
    expect(watch.overlaps).toEqual([]);
    expectInOrder(watch.delivered, values, perValue);
  });
});

describe.each(protocols)("ordering's bad input over %s", (protocol) => {
  it.each(["", "   ", "k".repeat(257)])("refuses ordering_key %j, writing nothing", async (orderingKey) => {
    const api = createApi(protocol, quiet.url);
    const topicId = uniqueId("topic");
    await api.topics.createTopic({ id: topicId });
    const before = await databaseChecksum(quietDb);
    const id = uniqueId("bad");
    const error = await expectCode(api.subscriptions.createSubscription({ id, topicId, orderingKey }), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^ordering_key must be a payload key/);
    expect(await databaseChecksum(quietDb)).toEqual(before);
  });
});

describe("an ordered subscription over REST", () => {
  it("has ordering_key in its JSON, and an unordered one has none", async () => {
    const api = createApi("rest", server.url);
    const { topicId, subscriptionId } = await orderedSubscription(api);
    const plain = uniqueId("plain");
    await api.subscriptions.createSubscription({ id: plain, topicId });
    const json = async (id: string) => (await (await fetch(new URL(`/subscriptions/${id}`, server.url))).json()) as Record<string, unknown>;
    expect((await json(subscriptionId)).ordering_key).toBe("k");
    expect(Object.keys(await json(plain))).not.toContain("ordering_key");
  });
});

describe("the cost of an ordered consume", () => {
  it("does not grow with a value's backlog: a consume reads a few index entries and rows per value, not the queued messages", async () => {
    const db = new pg.Client({ connectionString: await createTestDatabase() });
    await db.connect();
    try {
      await db.query("SELECT create_topic('t')");
      await db.query("SELECT create_subscription('o', 't', NULL, 5, 1, 1, 60, 'k')");
      // 20,000 messages of one value, then 50 other values and 20 messages without the key.
      await db.query(
        "SELECT publish_messages('t', (SELECT json_agg(json_build_object('k', 'hot', 'n', g)) FROM generate_series(1, 20000) AS g))",
      );
      await db.query(
        "SELECT publish_messages('t', (SELECT json_agg(json_build_object('k', 'v' || g, 'n', g)) FROM generate_series(1, 50) AS g))",
      );
      await db.query("SELECT publish_messages('t', (SELECT json_agg(json_build_object('n', g)) FROM generate_series(1, 20) AS g))");
      await db.query("VACUUM ANALYZE messages");
      const hot = await db.query<{ n: number }>("SELECT (payload->>'n')::int AS n FROM consume_messages('o', 'w', 100) ORDER BY 1");
      expect(hot.rows.length).toBe(71);
      // The hot value's head is out: the next consume finds nothing ready, without reading its backlog.
      await db.query("BEGIN");
      const none = await db.query("SELECT * FROM consume_messages('o', 'w', 10)");
      const { rows } = await db.query<{ read: string }>(
        `SELECT (SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid)) FROM pg_index WHERE indrelid = 'messages'::regclass)
                + (SELECT idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'messages') AS read`,
      );
      await db.query("ROLLBACK");
      expect(none.rows).toEqual([]);
      expect(Number(rows[0]?.read)).toBeLessThan(1_000);
    } finally {
      await db.end();
    }
  });
});
