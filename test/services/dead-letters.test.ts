import { setTimeout as sleep } from "node:timers/promises";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStuckMessages } from "../../src/db/messages.ts";
import { createDatabasePool, type DatabasePool } from "../../src/db/pool.ts";
import { expireLeases } from "../../src/jobs/maintenance.ts";
import { dlqBatchSize } from "../../src/services/subscription-service.ts";
import { databaseChecksum } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { call as callHttp, send } from "../support/http.ts";
import { uniqueId } from "../support/ids.ts";
import { consume, metrics } from "../support/messages.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startQuietServer, type TestServer } from "../support/server.ts";

// No background job runs: the tests expire leases themselves, and compare table checksums.
let server: TestServer;
let db: pg.Client;
let pool: DatabasePool;
beforeAll(async () => {
  ({ server, db } = await startQuietServer());
  pool = createDatabasePool(server.databaseUrl, { maxPoolSize: 2 });
});
afterAll(async () => {
  await pool?.end();
  await db?.end();
  await server?.close();
});

interface Settings {
  maxDeliveryAttempts?: number;
  ackDeadlineSeconds?: number;
}

/** Creates a topic with one subscription and publishes `count` messages to it; returns both ids. */
async function queue(api: Api, count: number, settings: Settings = {}) {
  const topicId = uniqueId("topic");
  const subscriptionId = uniqueId("dlq");
  await api.topics.createTopic({ id: topicId });
  await api.subscriptions.createSubscription({
    id: subscriptionId,
    topicId,
    maxDeliveryAttempts: settings.maxDeliveryAttempts ?? 5,
    ackDeadlineSeconds: settings.ackDeadlineSeconds ?? 600,
    backoffMinSeconds: 1,
    backoffMaxSeconds: 1,
  });
  await publish(api, topicId, count);
  return { topicId, subscriptionId };
}

/** Publishes `count` messages, `{n}` from 0, in calls of 1000. */
async function publish(api: Api, topicId: string, count: number) {
  for (let start = 0; start < count; start += 1000) {
    const length = Math.min(1000, count - start);
    await api.topics.publishMessages({ topicId, messages: Array.from({ length }, (_, n) => ({ n: start + n })) });
  }
}

/** Consumes every ready message and nacks each straight to the dead-letter queue; returns their ids. */
async function deadLetterAll(api: Api, subscriptionId: string, reason?: string) {
  const ids: string[] = [];
  for (;;) {
    const batch = (await consume(api, subscriptionId, 100)).map((message) => message.id);
    if (batch.length === 0) return ids;
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: batch, deadLetter: true, reason });
    ids.push(...batch);
  }
}

/** Every dead letter of a subscription, oldest first. */
async function allDeadLetters(api: Api, subscriptionId: string) {
  const all = [];
  for (let offset = 0; ; offset += 100) {
    const { data } = await api.subscriptions.listDlqMessages({ subscriptionId, offset, limit: 100 });
    all.push(...data);
    if (data.length < 100) return all;
  }
}

/** The dead-letter and delayed gauges of a subscription in /metrics. */
async function gauges(subscriptionId: string) {
  const { text } = await send(server.url, "GET", "/metrics");
  const series = (name: string) => {
    const line = text.split("\n").find((candidate) => candidate.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  };
  const labels = `subscription="${subscriptionId}"`;
  return {
    dlq: series(`fastpubsub_subscription_messages{${labels},state="dlq"}`),
    available: series(`fastpubsub_subscription_messages{${labels},state="available"}`),
    delayed: series(`fastpubsub_subscription_delayed_messages{${labels}}`),
    max_delivery_attempts: series(`fastpubsub_subscription_dead_letters{${labels},reason="max_delivery_attempts"}`),
    lease_expired: series(`fastpubsub_subscription_dead_letters{${labels},reason="lease_expired"}`),
    nacked: series(`fastpubsub_subscription_dead_letters{${labels},reason="nacked"}`),
  };
}

describe.each(protocols)("dead-letter control over %s", (protocol) => {
  let api: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
  });

  it("dead-letters with the nack's reason, 'nacked' without one, or 'max_delivery_attempts', each with when it died", async () => {
    const { subscriptionId } = await queue(api, 3, { maxDeliveryAttempts: 1 });
    const delivered = await consume(api, subscriptionId);
    expect(delivered).toHaveLength(3);
    // A delivery is not a dead letter: neither field is set.
    expect(delivered[0]?.deadLetteredAt).toBeUndefined();
    expect(delivered[0]?.reason).toBeUndefined();
    const [a, b, c] = delivered.map((message) => message.id) as [string, string, string];
    const before = Date.now();
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [a], deadLetter: true, reason: "bad schema: ü ✓" });
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [b], deadLetter: true });
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [c] });
    const after = Date.now();
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 3 });

    const dead = await allDeadLetters(api, subscriptionId);
    expect(dead.map((message) => [message.id, message.reason, message.deliveryAttempts])).toEqual([
      [a, "bad schema: ü ✓", 1],
      [b, "nacked", 1],
      [c, "max_delivery_attempts", 1],
    ]);
    for (const message of dead) {
      expect(message.deadLetteredAt).toBeDefined();
      const at = message.deadLetteredAt ? timestampDate(message.deadLetteredAt).getTime() : 0;
      // The database's clock, read to the millisecond.
      expect(at).toBeGreaterThanOrEqual(before - 1000);
      expect(at).toBeLessThanOrEqual(after + 1000);
    }
    expect(await gauges(subscriptionId)).toMatchObject({ dlq: 3, max_delivery_attempts: 1, lease_expired: 0, nacked: 2 });
  });

  it("dead-letters a nacked message with dead_letter even when it has attempts left, and ignores ids that are not live", async () => {
    const { subscriptionId } = await queue(api, 2, { maxDeliveryAttempts: 10 });
    const [first] = await consume(api, subscriptionId, 1);
    const id = first?.id as string;
    const [other] = await queue(api, 1).then(({ subscriptionId: foreign }) => consume(api, foreign));
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id, other?.id as string], deadLetter: true, reason: "x" });
    // Nacked again: no longer delivered, so nothing changes.
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id], deadLetter: true, reason: "y" });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 0, acked: 0, dlq: 1 });
    expect((await allDeadLetters(api, subscriptionId)).map((message) => [message.id, message.reason])).toEqual([[id, "x"]]);
  });

  it("keeps a reason without dead_letter only with the messages whose last attempt that nack fails", async () => {
    const { subscriptionId } = await queue(api, 1, { maxDeliveryAttempts: 2 });
    const [first] = await consume(api, subscriptionId);
    const id = first?.id as string;
    // Attempts left: retried as any nack is, the reason kept nowhere.
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id], reason: "flaky downstream", delaySeconds: 0 });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 0, acked: 0, dlq: 0 });
    expect((await consume(api, subscriptionId)).map((message) => [message.id, message.reason])).toEqual([[id, undefined]]);
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id], reason: "still failing" });
    expect((await allDeadLetters(api, subscriptionId)).map((message) => [message.id, message.reason])).toEqual([[id, "still failing"]]);
  });

  it("reprocesses all dead letters and purges them by id and all, keeping every count exact", async () => {
    const { subscriptionId } = await queue(api, 12, { maxDeliveryAttempts: 1 });
    const ids = await deadLetterAll(api, subscriptionId, "broken");
    expect(ids).toHaveLength(12);
    expect(await gauges(subscriptionId)).toMatchObject({ dlq: 12, nacked: 12, available: 0 });

    await api.subscriptions.reprocessDlqMessages({ subscriptionId, all: true });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 12, delivered: 0, acked: 0, dlq: 0 });
    expect(await gauges(subscriptionId)).toMatchObject({ dlq: 0, nacked: 0, available: 12 });
    expect(await allDeadLetters(api, subscriptionId)).toEqual([]);
    // Reprocessed with attempts reset, and a dead letter again only when it dies again.
    const revived = await consume(api, subscriptionId);
    expect(revived.map((message) => [message.deliveryAttempts, message.reason, message.deadLetteredAt])).toEqual(
      Array(12).fill([1, undefined, undefined]),
    );
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: revived.map((message) => message.id) });
    expect(await gauges(subscriptionId)).toMatchObject({ dlq: 12, max_delivery_attempts: 12, nacked: 0 });

    await api.subscriptions.purgeDlqMessages({ subscriptionId, messageIds: ids.slice(0, 2) });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 10 });
    expect((await allDeadLetters(api, subscriptionId)).map((message) => message.id)).toEqual(ids.slice(2));
    await api.subscriptions.purgeDlqMessages({ subscriptionId, all: true });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 0 });
    expect(await gauges(subscriptionId)).toMatchObject({ dlq: 0, available: 0, max_delivery_attempts: 0, nacked: 0 });
    expect(await allDeadLetters(api, subscriptionId)).toEqual([]);
    // Purged messages are gone for good.
    await api.subscriptions.reprocessDlqMessages({ subscriptionId, messageIds: ids });
    expect(await consume(api, subscriptionId)).toEqual([]);
    // With nothing to do, all is no error.
    await api.subscriptions.reprocessDlqMessages({ subscriptionId, all: true });
    await api.subscriptions.purgeDlqMessages({ subscriptionId, all: true });
  });

  it("changes nothing when reprocessing or purging another subscription's dead letters", async () => {
    const mine = await queue(api, 2, { maxDeliveryAttempts: 1 });
    const theirs = await queue(api, 2, { maxDeliveryAttempts: 1 });
    const ids = await deadLetterAll(api, theirs.subscriptionId);
    await deadLetterAll(api, mine.subscriptionId);
    const before = await databaseChecksum(db);
    await api.subscriptions.reprocessDlqMessages({ subscriptionId: mine.subscriptionId, messageIds: ids });
    await api.subscriptions.purgeDlqMessages({ subscriptionId: mine.subscriptionId, messageIds: ids });
    expect(await databaseChecksum(db)).toEqual(before);
    await expectCode(api.subscriptions.purgeDlqMessages({ subscriptionId: uniqueId("missing"), all: true }), Code.NotFound);
    await expectCode(api.subscriptions.reprocessDlqMessages({ subscriptionId: uniqueId("missing"), all: true }), Code.NotFound);
    expect(await databaseChecksum(db)).toEqual(before);
  });

  it("refuses bad input with invalid_argument and changes nothing", async () => {
    const { subscriptionId } = await queue(api, 2, { maxDeliveryAttempts: 1 });
    const [dead, live] = (await consume(api, subscriptionId)).map((message) => message.id) as [string, string];
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [dead], deadLetter: true });
    const before = await databaseChecksum(db);
    const invalid = [
      [
        "a reason over 1024 characters",
        () => api.subscriptions.nackMessages({ subscriptionId, messageIds: [live], deadLetter: true, reason: "r".repeat(1025) }),
        /^reason must be at most 1024 characters/,
      ],
      [
        "a delay with dead_letter",
        () => api.subscriptions.nackMessages({ subscriptionId, messageIds: [live], deadLetter: true, delaySeconds: 5 }),
        /^delay_seconds cannot be combined with dead_letter/,
      ],
      [
        "a reprocess of all and of ids",
        () => api.subscriptions.reprocessDlqMessages({ subscriptionId, messageIds: [dead], all: true }),
        /^message_ids must be empty when all is true/,
      ],
      [
        "a purge of all and of ids",
        () => api.subscriptions.purgeDlqMessages({ subscriptionId, messageIds: [dead], all: true }),
        /^message_ids must be empty when all is true/,
      ],
      [
        "a purge of a bad id",
        () => api.subscriptions.purgeDlqMessages({ subscriptionId, messageIds: [dead, "not-a-uuid"] }),
        /^message_ids/,
      ],
      [
        "a purge of 1001 ids",
        () => api.subscriptions.purgeDlqMessages({ subscriptionId, messageIds: Array(1001).fill(dead) }),
        /^message_ids must have at most 1000/,
      ],
      ["a reprocess of a bad id", () => api.subscriptions.reprocessDlqMessages({ subscriptionId, messageIds: ["x"] }), /^message_ids/],
    ] as const;
    for (const [what, call, message] of invalid) {
      const error = await expectCode(call(), Code.InvalidArgument);
      expect(error.rawMessage, what).toMatch(message);
    }
    expect(await databaseChecksum(db)).toEqual(before);
    // A reason of exactly 1024 characters is kept whole.
    const reason = "é".repeat(1024);
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [live], deadLetter: true, reason });
    expect((await allDeadLetters(api, subscriptionId)).map((message) => message.reason)).toEqual(["nacked", reason]);
  });
});

describe("dead letters of the lease expiry", () => {
  it("are 'lease_expired', from expire_leases and from cleanup_stuck_messages alike", async () => {
    const api = createApi("grpc", server.url);
    const { subscriptionId } = await queue(api, 2, { maxDeliveryAttempts: 1, ackDeadlineSeconds: 1 });
    const [first] = await consume(api, subscriptionId, 1);
    await sleep(1_100);
    expect(await expireLeases(pool)).toBeGreaterThanOrEqual(1);
    const [second] = await consume(api, subscriptionId, 1);
    expect(await cleanupStuckMessages(pool, 0)).toBeGreaterThanOrEqual(1);
    const dead = await allDeadLetters(api, subscriptionId);
    expect(dead.map((message) => [message.id, message.reason])).toEqual([
      [first?.id, "lease_expired"],
      [second?.id, "lease_expired"],
    ]);
    expect(await gauges(subscriptionId)).toMatchObject({ dlq: 2, lease_expired: 2, max_delivery_attempts: 0, nacked: 0 });
  });

  it("are 'max_delivery_attempts' when ModifyAckDeadline with 0 uses up the attempts", async () => {
    const api = createApi("connect-json", server.url);
    const { subscriptionId } = await queue(api, 1, { maxDeliveryAttempts: 1 });
    const [first] = await consume(api, subscriptionId, 1);
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: [first?.id as string], ackDeadlineSeconds: 0 });
    expect((await allDeadLetters(api, subscriptionId)).map((message) => message.reason)).toEqual(["max_delivery_attempts"]);
  });
});

describe("REST dead-letter paths", () => {
  it("nack to the dead-letter queue from the query string and show the reason and time in /dlq, as proto JSON does", async () => {
    const api = createApi("rest", server.url);
    const { subscriptionId } = await queue(api, 2, { maxDeliveryAttempts: 3 });
    const consumed = await callHttp(server.url, "GET", `/subscriptions/${subscriptionId}/messages?consumer_id=w&batch_size=2`);
    const data = (consumed.json as { data: Record<string, unknown>[] }).data;
    // A delivered message carries neither field.
    expect(Object.keys(data[0] ?? {}).sort()).toEqual(["created_at", "delivery_attempts", "id", "payload", "subscription_id"]);
    const ids = data.map((message) => message.id);
    const nack = await callHttp(server.url, "POST", `/subscriptions/${subscriptionId}/nacks?dead_letter=true&reason=bad+schema`, ids);
    expect(nack.status).toBe(204);
    const dlq = await callHttp(server.url, "GET", `/subscriptions/${subscriptionId}/dlq`);
    expect(dlq.status).toBe(200);
    const [dead] = (dlq.json as { data: Record<string, unknown>[] }).data;
    expect(dead).toMatchObject({
      id: ids[0],
      subscription_id: subscriptionId,
      payload: { n: 0 },
      delivery_attempts: 1,
      reason: "bad schema",
    });
    expect(dead?.dead_lettered_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/);
    // Connect's JSON says the same.
    const connect = await callHttp(
      server.url,
      "POST",
      "/fastpubsub.v1.SubscriptionService/ListDlqMessages",
      { subscription_id: subscriptionId },
      {},
    );
    expect((connect.json as { data: unknown[] }).data[0]).toMatchObject({ reason: "bad schema", dead_lettered_at: dead?.dead_lettered_at });
  });

  it("reprocess and purge all without a body or with [], and refuse all with ids; other list bodies stay required", async () => {
    const api = createApi("rest", server.url);
    const { topicId, subscriptionId } = await queue(api, 3, { maxDeliveryAttempts: 1 });
    const ids = await deadLetterAll(api, subscriptionId);
    const path = `/subscriptions/${subscriptionId}/dlq`;

    const before = await databaseChecksum(db);
    for (const [verb, target, body] of [
      ["POST", `${path}/reprocess?all=true`, [ids[0]]],
      ["POST", `${path}/purge?all=1`, ids],
      ["POST", `${path}/purge`, undefined],
      ["POST", `${path}/reprocess?all=false`, undefined],
      ["POST", `${path}/purge?all=maybe`, []],
      ["POST", `/subscriptions/${subscriptionId}/acks?all=true`, undefined],
      ["POST", `/subscriptions/${subscriptionId}/nacks?dead_letter=true`, undefined],
      ["POST", `/topics/${topicId}/messages?all=true`, undefined],
    ] as const) {
      const answer = await callHttp(server.url, verb, target, body);
      expect([target, answer.status]).toEqual([target, 422]);
      expect(answer.json).toEqual({ detail: expect.any(String) });
    }
    expect((await callHttp(server.url, "POST", `${path}/purge`)).json).toEqual({ detail: "request body is required" });
    expect((await callHttp(server.url, "POST", `${path}/reprocess?all=true`, [ids[0]])).json).toEqual({
      detail: "message_ids must be empty when all is true",
    });
    expect(await databaseChecksum(db)).toEqual(before);

    expect((await send(server.url, "POST", `${path}/reprocess?all=true`)).status).toBe(204);
    expect(await metrics(api, subscriptionId)).toMatchObject({ available: 3, dlq: 0 });
    await deadLetterAll(api, subscriptionId);
    expect((await send(server.url, "POST", `${path}/purge?all=true`, [])).status).toBe(204);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 0 });
  });
});

describe("/metrics", () => {
  it("counts delayed messages: never delivered and not yet due, but not those waiting out a backoff", async () => {
    const api = createApi("grpc", server.url);
    const { subscriptionId } = await queue(api, 4, { maxDeliveryAttempts: 5 });
    // A delayed publish stores the message with a future available_at; two of these are made so here.
    await db.query(
      `UPDATE messages SET available_at = now() + interval '1 hour'
       WHERE subscription_key = (SELECT key FROM subscriptions WHERE id = $1)
         AND id IN (SELECT id FROM messages WHERE subscription_key = (SELECT key FROM subscriptions WHERE id = $1) ORDER BY id LIMIT 2)`,
      [subscriptionId],
    );
    const [ready] = await consume(api, subscriptionId, 1);
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [ready?.id as string], delaySeconds: 3600 });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 4, delivered: 0, acked: 0, dlq: 0 });
    expect(await gauges(subscriptionId)).toMatchObject({ available: 4, delayed: 2 });
  });
});

describe(`${dlqBatchSize * 4} dead letters`, () => {
  it("are reprocessed and purged in batches of short transactions while another subscription publishes and consumes", async () => {
    const api = createApi("grpc", server.url);
    const total = dlqBatchSize * 4;
    const { subscriptionId } = await queue(api, total, { maxDeliveryAttempts: 1 });
    expect(await deadLetterAll(api, subscriptionId)).toHaveLength(total);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: total });
    const other = await queue(api, 0);

    /** Runs `bulk` while watching its transactions and working on the other subscription; returns what it saw. */
    const observe = async (bulk: () => Promise<unknown>, functionName: string) => {
      const transactions = new Set<string>();
      let done = false;
      const watch = (async () => {
        while (!done) {
          const { rows } = await db.query<{ started: string }>(
            "SELECT xact_start::text AS started FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active'",
            [`%${functionName}(%`],
          );
          for (const row of rows) transactions.add(row.started);
          await sleep(5);
        }
      })();
      let othersDone = 0;
      const work = (async () => {
        while (!done) {
          await api.topics.publishMessages({ topicId: other.topicId, messages: [{ n: othersDone }] });
          const got = await consume(api, other.subscriptionId, 10);
          await api.subscriptions.ackMessages({ subscriptionId: other.subscriptionId, messageIds: got.map((message) => message.id) });
          othersDone++;
        }
      })();
      await bulk();
      done = true;
      await Promise.all([watch, work]);
      return { transactions: transactions.size, othersDone };
    };

    // Another transaction holds the oldest dead letter: the batches skip it, and go on past the short one.
    const holder = new pg.Client({ connectionString: server.databaseUrl });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query(
        `SELECT 1 FROM dead_letters WHERE subscription_key = (SELECT key FROM subscriptions WHERE id = $1)
         ORDER BY created_at, id LIMIT 1 FOR UPDATE`,
        [subscriptionId],
      );
      const reprocessed = await observe(
        () => api.subscriptions.reprocessDlqMessages({ subscriptionId, all: true }),
        "reprocess_all_dlq_messages",
      );
      expect(await metrics(api, subscriptionId)).toEqual({ available: total - 1, delivered: 0, acked: 0, dlq: 1 });
      expect(reprocessed.transactions).toBeGreaterThan(1);
      expect(reprocessed.othersDone).toBeGreaterThan(0);
    } finally {
      await holder.query("ROLLBACK");
      await holder.end();
    }
    await api.subscriptions.reprocessDlqMessages({ subscriptionId, all: true });
    expect(await metrics(api, subscriptionId)).toEqual({ available: total, delivered: 0, acked: 0, dlq: 0 });

    expect(await deadLetterAll(api, subscriptionId)).toHaveLength(total);
    const purged = await observe(() => api.subscriptions.purgeDlqMessages({ subscriptionId, all: true }), "purge_all_dlq_messages");
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 0 });
    expect(purged.transactions).toBeGreaterThan(1);
    expect(await gauges(subscriptionId)).toMatchObject({ dlq: 0, available: 0, max_delivery_attempts: 0, nacked: 0, lease_expired: 0 });
    // The other subscription lost nothing.
    expect((await metrics(api, other.subscriptionId)).available + (await metrics(api, other.subscriptionId)).delivered).toBe(0);
  }, 120_000);
});
