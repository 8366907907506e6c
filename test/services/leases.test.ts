import { setTimeout as sleep } from "node:timers/promises";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabasePool } from "../../src/db/pool.ts";
import { expireLeases } from "../../src/jobs/maintenance.ts";
import { databaseChecksum } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { call as callHttp } from "../support/http.ts";
import { uniqueId } from "../support/ids.ts";
import { consume, metrics } from "../support/messages.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

// `server` runs the lease expiry every second, as a server does by default. `quiet` runs no
// background job, so that its tests can compare table checksums and expire leases themselves.
let server: TestServer;
let quiet: TestServer;
beforeAll(async () => {
  [server, quiet] = await Promise.all([
    startTestServer({ FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "0" }),
    startTestServer({
      FASTPUBSUB_EXPIRE_LEASES_INTERVAL_SECONDS: "0",
      FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: "0",
      FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "0",
      FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS: "0",
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([server?.close(), quiet?.close()]);
});

interface Settings {
  ackDeadlineSeconds?: number;
  maxDeliveryAttempts?: number;
  backoff?: number;
}

/** Creates a topic with one subscription and publishes `count` messages to it; returns the subscription's id. */
async function queue(api: Api, count: number, settings: Settings = {}) {
  const topicId = uniqueId("topic");
  const subscriptionId = uniqueId("leases");
  await api.topics.createTopic({ id: topicId });
  await api.subscriptions.createSubscription({
    id: subscriptionId,
    topicId,
    ackDeadlineSeconds: settings.ackDeadlineSeconds,
    maxDeliveryAttempts: settings.maxDeliveryAttempts ?? 5,
    backoffMinSeconds: settings.backoff ?? 1,
    backoffMaxSeconds: settings.backoff ?? 1,
  });
  if (count > 0) await api.topics.publishMessages({ topicId, messages: Array.from({ length: count }, (_, n) => ({ n })) });
  return subscriptionId;
}

/** Consumes until a message with `id` comes back, and returns it. */
function redelivery(api: Api, subscriptionId: string, id: string, consumerId = "worker-1") {
  return waitFor(
    async () => (await consume(api, subscriptionId, 100, consumerId)).find((message) => message.id === id),
    15_000,
    `the redelivery of ${id}`,
  );
}

describe.each(protocols)("leases over %s", (protocol) => {
  let api: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
  });

  it("delivers for the subscription's ack_deadline_seconds, then redelivers with one more attempt, and dead-letters after max_delivery_attempts", async () => {
    const subscriptionId = await queue(api, 1, { ackDeadlineSeconds: 1, maxDeliveryAttempts: 2 });
    const [first] = await consume(api, subscriptionId);
    const id = first?.id as string;
    expect(first?.deliveryAttempts).toBe(1);
    // Expired, not acked: the in-server expiry releases it as a failed attempt.
    const again = await redelivery(api, subscriptionId, id);
    expect(again.deliveryAttempts).toBe(2);
    expect(again.payload).toEqual({ n: 0 });
    const dead = await waitFor(async () => {
      const counts = await metrics(api, subscriptionId);
      return counts.dlq === 1 ? counts : undefined;
    });
    expect(dead).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 1 });
    const dlq = await api.subscriptions.listDlqMessages({ subscriptionId });
    expect(dlq.data.map((message) => [message.id, message.deliveryAttempts])).toEqual([[id, 2]]);
  });

  it("keeps a delivery whose lease ModifyAckDeadline extended, while one it did not extend expires", async () => {
    const subscriptionId = await queue(api, 2, { ackDeadlineSeconds: 1 });
    const [kept, left] = await consume(api, subscriptionId);
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: [kept?.id as string], ackDeadlineSeconds: 60 });
    // Once the other one is back, its deadline (the same as the kept one's) has passed and the expiry has run.
    const back = await redelivery(api, subscriptionId, left?.id as string);
    expect(back.deliveryAttempts).toBe(2);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 2, acked: 0, dlq: 0 });
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [kept?.id as string] });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 1, acked: 1, dlq: 0 });
  });

  it("makes a message available at once with ModifyAckDeadline 0, counting the attempt, and dead-letters it when attempts are used up", async () => {
    // A backoff of 300 s: a message back at once was not given one.
    const subscriptionId = await queue(api, 1, { ackDeadlineSeconds: 600, maxDeliveryAttempts: 2, backoff: 300 });
    const [first] = await consume(api, subscriptionId);
    const id = first?.id as string;
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: [id], ackDeadlineSeconds: 0 });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 0, acked: 0, dlq: 0 });
    const [second] = await consume(api, subscriptionId);
    expect(second).toMatchObject({ id, deliveryAttempts: 2 });
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: [id], ackDeadlineSeconds: 0 });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 1 });
    // Released ids are no longer live deliveries: acking or modifying them changes nothing.
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: [id], ackDeadlineSeconds: 0 });
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [id] });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 1 });
  });

  it("lets ack, nack and ModifyAckDeadline with a consumer_id touch only that consumer's deliveries", async () => {
    const subscriptionId = await queue(api, 4, { ackDeadlineSeconds: 600, backoff: 300 });
    const [acked, nacked, released, other] = (await consume(api, subscriptionId, 4, "w1")).map((message) => message.id);
    const ids = [acked, nacked, released, other] as string[];
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: ids, consumerId: "w2" });
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: ids, consumerId: "w2" });
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: ids, consumerId: "w2", delaySeconds: 0 });
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: ids, consumerId: "w2", ackDeadlineSeconds: 0 });
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: ids, consumerId: "w2", ackDeadlineSeconds: 1 });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 4, acked: 0, dlq: 0 });

    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [acked as string], consumerId: "w1" });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 3, acked: 1, dlq: 0 });
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [nacked as string], consumerId: "w1" });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 2, acked: 1, dlq: 0 });
    await api.subscriptions.modifyAckDeadline({
      subscriptionId,
      messageIds: [released as string],
      consumerId: "w1",
      ackDeadlineSeconds: 0,
    });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 2, delivered: 1, acked: 1, dlq: 0 });
    // The one back at once is the one released with no backoff; the nacked one waits out its 600 s.
    expect((await consume(api, subscriptionId, 10, "w3")).map((message) => message.id)).toEqual([released]);
    // Without consumer_id, as in the seed, any consumer's delivery is acked.
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [other as string, released as string] });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 0, acked: 3, dlq: 0 });
  });

  it("makes a nacked message available after delay_seconds instead of the backoff, and dead-letters it when attempts are used up", async () => {
    const subscriptionId = await queue(api, 1, { ackDeadlineSeconds: 600, maxDeliveryAttempts: 3, backoff: 300 });
    const [first] = await consume(api, subscriptionId);
    const id = first?.id as string;
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id], delaySeconds: 0 });
    const [second] = await consume(api, subscriptionId);
    expect(second).toMatchObject({ id, deliveryAttempts: 2 });
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id], delaySeconds: 1 });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 1, delivered: 0, acked: 0, dlq: 0 });
    const third = await redelivery(api, subscriptionId, id);
    expect(third.deliveryAttempts).toBe(3);
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [id], delaySeconds: 0 });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 1 });
  });

  it("has deliveries made after UpdateSubscription use its settings", async () => {
    const subscriptionId = await queue(api, 1, { ackDeadlineSeconds: 600, maxDeliveryAttempts: 5 });
    const updated = await api.subscriptions.updateSubscription({ id: subscriptionId, ackDeadlineSeconds: 1, maxDeliveryAttempts: 1 });
    expect(updated).toMatchObject({ ackDeadlineSeconds: 1, maxDeliveryAttempts: 1 });
    expect(await consume(api, subscriptionId)).toHaveLength(1);
    // A one-second lease that expires, on its one attempt: dead-lettered.
    const dead = await waitFor(async () => {
      const counts = await metrics(api, subscriptionId);
      return counts.dlq === 1 ? counts : undefined;
    });
    expect(dead).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 1 });
  });
});

describe("an expired lease, before the expiry has run", () => {
  it("can no longer be acked, nacked or extended, and is released as a failed attempt by expire_leases", async () => {
    const api = createApi("connect-json", quiet.url);
    const subscriptionId = await queue(api, 3, { ackDeadlineSeconds: 1, maxDeliveryAttempts: 5 });
    const ids = (await consume(api, subscriptionId)).map((message) => message.id);
    await sleep(1_200);
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: ids.slice(0, 1) });
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: ids.slice(1, 2), delaySeconds: 0 });
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: ids.slice(2), ackDeadlineSeconds: 600 });
    await api.subscriptions.modifyAckDeadline({ subscriptionId, messageIds: ids, ackDeadlineSeconds: 0 });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 3, acked: 0, dlq: 0 });
    expect(await consume(api, subscriptionId)).toEqual([]);

    const pool = createDatabasePool(quiet.databaseUrl, { maxPoolSize: 1 });
    try {
      expect(await expireLeases(pool)).toBeGreaterThanOrEqual(3);
    } finally {
      await pool.end();
    }
    expect(await metrics(api, subscriptionId)).toEqual({ available: 3, delivered: 0, acked: 0, dlq: 0 });
    const again = await waitFor(async () => {
      const messages = await consume(api, subscriptionId);
      return messages.length === 3 ? messages : undefined;
    });
    expect(again.map((message) => message.deliveryAttempts)).toEqual([2, 2, 2]);
  });

  it("is released once when several servers expire leases at the same time", async () => {
    const api = createApi("grpc", quiet.url);
    const subscriptionId = await queue(api, 50, { ackDeadlineSeconds: 1 });
    expect(await consume(api, subscriptionId)).toHaveLength(50);
    await sleep(1_100);
    const pools = [1, 2, 3].map(() => createDatabasePool(quiet.databaseUrl, { maxPoolSize: 1 }));
    try {
      await Promise.all(pools.map((pool) => expireLeases(pool)));
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
    expect(await metrics(api, subscriptionId)).toEqual({ available: 50, delivered: 0, acked: 0, dlq: 0 });
  });
});

describe.each(protocols)("bad lease input over %s", (protocol) => {
  let api: Api;
  let db: pg.Client;
  let subscriptionId: string;
  let id: string;
  beforeAll(async () => {
    api = createApi(protocol, quiet.url);
    db = new pg.Client({ connectionString: quiet.databaseUrl });
    await db.connect();
    subscriptionId = await queue(api, 1, { ackDeadlineSeconds: 600 });
    id = (await consume(api, subscriptionId))[0]?.id as string;
  });
  afterAll(async () => {
    await db.end();
  });

  /** Expects `call` to be refused as invalid_argument with a message matching `message`, and no table to change. */
  async function expectRefused(call: () => Promise<unknown>, message: RegExp) {
    const before = await databaseChecksum(db);
    const error = await expectCode(call(), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(message);
    expect(await databaseChecksum(db)).toEqual(before);
  }

  it("is refused with invalid_argument naming the field, and changes nothing", async () => {
    const s = () => api.subscriptions;
    const cases: [() => Promise<unknown>, RegExp][] = [
      [() => s().modifyAckDeadline({ subscriptionId, messageIds: [id] }), /^ack_deadline_seconds is required$/],
      [
        () => s().modifyAckDeadline({ subscriptionId, messageIds: [id], ackDeadlineSeconds: 601 }),
        /^ack_deadline_seconds must be between 0 and 600$/,
      ],
      [
        () => s().modifyAckDeadline({ subscriptionId, messageIds: [id], ackDeadlineSeconds: -1 }),
        /^ack_deadline_seconds must be between 0 and 600$/,
      ],
      [
        () => s().modifyAckDeadline({ subscriptionId, messageIds: [id, "nope"], ackDeadlineSeconds: 0 }),
        /^message_ids has an item that must be a UUID/,
      ],
      [
        () => s().modifyAckDeadline({ subscriptionId, messageIds: Array(1001).fill(id), ackDeadlineSeconds: 0 }),
        /^message_ids must have at most 1000/,
      ],
      [
        () => s().modifyAckDeadline({ subscriptionId, messageIds: [id], ackDeadlineSeconds: 0, consumerId: "" }),
        /^consumer_id must not be blank$/,
      ],
      [
        () => s().modifyAckDeadline({ subscriptionId, messageIds: [id], ackDeadlineSeconds: 0, consumerId: " \t" }),
        /^consumer_id must not be blank$/,
      ],
      [() => s().ackMessages({ subscriptionId, messageIds: [id], consumerId: "" }), /^consumer_id must not be blank$/],
      [() => s().ackMessages({ subscriptionId, messageIds: ["123"], consumerId: "w" }), /^message_ids has an item that must be a UUID/],
      [() => s().nackMessages({ subscriptionId, messageIds: [id], consumerId: "  " }), /^consumer_id must not be blank$/],
      [() => s().nackMessages({ subscriptionId, messageIds: [id], delaySeconds: -1 }), /^delay_seconds must be between 0 and 86400$/],
      [() => s().nackMessages({ subscriptionId, messageIds: [id], delaySeconds: 86_401 }), /^delay_seconds must be between 0 and 86400$/],
    ];
    for (const [call, message] of cases) await expectRefused(call, message);
  });

  it("refuses a subscription's ack_deadline_seconds out of 1 to 600 on create and update", async () => {
    const topicId = (await api.subscriptions.getSubscription({ id: subscriptionId })).topicId;
    for (const ackDeadlineSeconds of [0, 601, -5]) {
      await expectRefused(
        () => api.subscriptions.createSubscription({ id: uniqueId("bad-deadline"), topicId, ackDeadlineSeconds }),
        /^ack_deadline_seconds must be between 1 and 600$/,
      );
      await expectRefused(
        () => api.subscriptions.updateSubscription({ id: subscriptionId, ackDeadlineSeconds }),
        /^ack_deadline_seconds must be between 1 and 600$/,
      );
    }
  });
});

describe("the REST lease paths", () => {
  const call = (method: string, path: string, body?: unknown) => callHttp(server.url, method, path, body);

  it("read consumer_id and delay_seconds from the query string, and a modify-ack-deadline body's own fields first", async () => {
    const api = createApi("rest", server.url);
    const subscriptionId = await queue(api, 4, { ackDeadlineSeconds: 600, backoff: 300 });
    const ids = (await consume(api, subscriptionId, 4, "w1")).map((message) => message.id);
    const path = (action: string, query = "") => `/subscriptions/${subscriptionId}/${action}${query}`;
    const counts = async () => (await call("GET", `/subscriptions/${subscriptionId}/metrics`)).json;

    expect(await call("POST", path("acks", "?consumer_id=w2"), ids)).toMatchObject({ status: 204, text: "" });
    expect(await call("POST", path("nacks", "?consumer_id=w2&delay_seconds=0"), ids)).toMatchObject({ status: 204 });
    const modify = { message_ids: ids, ack_deadline_seconds: 0 };
    expect(await call("POST", path("modify-ack-deadline", "?consumer_id=w2"), modify)).toMatchObject({ status: 204, text: "" });
    // The body's consumer_id wins over the query string's.
    expect(await call("POST", path("modify-ack-deadline", "?consumer_id=w1"), { ...modify, consumer_id: "w2" })).toMatchObject({
      status: 204,
    });
    expect(await counts()).toMatchObject({ available: 0, delivered: 4, acked: 0 });

    expect(await call("POST", path("acks", "?consumer_id=w1"), ids.slice(0, 1))).toMatchObject({ status: 204 });
    expect(await call("POST", path("nacks", "?consumer_id=w1&delay_seconds=0"), ids.slice(1, 2))).toMatchObject({ status: 204 });
    expect(await call("POST", path("modify-ack-deadline", "?consumer_id=w1"), { ...modify, message_ids: ids.slice(2, 3) })).toMatchObject({
      status: 204,
    });
    expect(await call("POST", path("modify-ack-deadline"), { ...modify, message_ids: ids.slice(3), consumer_id: "w1" })).toMatchObject({
      status: 204,
    });
    expect(await counts()).toMatchObject({ available: 3, delivered: 0, acked: 1 });
  });

  it("refuse bad lease parameters with 422 naming them, and change nothing", async () => {
    const api = createApi("rest", server.url);
    const subscriptionId = await queue(api, 1, { ackDeadlineSeconds: 600 });
    const ids = (await consume(api, subscriptionId)).map((message) => message.id);
    const path = (action: string, query = "") => `/subscriptions/${subscriptionId}/${action}${query}`;
    const refused: [string, unknown, RegExp][] = [
      [path("acks", "?consumer_id="), ids, /^consumer_id must not be blank/],
      [path("nacks", "?consumer_id=%20"), ids, /^consumer_id must not be blank/],
      [path("nacks", "?delay_seconds=-1"), ids, /^delay_seconds must be between 0 and 86400/],
      [path("nacks", "?delay_seconds=86401"), ids, /^delay_seconds must be between 0 and 86400/],
      [path("nacks", "?delay_seconds=soon"), ids, /delay_seconds|int32/],
      [path("modify-ack-deadline"), { message_ids: ids }, /^ack_deadline_seconds is required/],
      [path("modify-ack-deadline"), { message_ids: ids, ack_deadline_seconds: 601 }, /^ack_deadline_seconds must be between 0 and 600/],
      [path("modify-ack-deadline"), { message_ids: ["x"], ack_deadline_seconds: 0 }, /^message_ids has an item that must be a UUID/],
      [path("modify-ack-deadline", "?consumer_id="), { message_ids: ids, ack_deadline_seconds: 0 }, /^consumer_id must not be blank/],
      [path("modify-ack-deadline"), ids, /^request body must be a JSON object/],
    ];
    for (const [where, body, detail] of refused) {
      const answer = await call("POST", where, body);
      expect(answer.status, `${where} ${JSON.stringify(body)}`).toBe(422);
      expect((answer.json as { detail: string }).detail, where).toMatch(detail);
    }
    expect((await call("GET", `/subscriptions/${subscriptionId}/metrics`)).json).toMatchObject({ available: 0, delivered: 1, acked: 0 });
  });

  it("update a subscription with PATCH, and refuse to change its topic or filter", async () => {
    const api = createApi("rest", server.url);
    const subscriptionId = await queue(api, 0);
    const before = (await call("GET", `/subscriptions/${subscriptionId}`)).json as Record<string, unknown>;
    expect(before.ack_deadline_seconds).toBe(60);
    const patched = await call("PATCH", `/subscriptions/${subscriptionId}`, { ack_deadline_seconds: 30, backoff_max_seconds: 20 });
    expect(patched).toMatchObject({ status: 200, json: { ...before, ack_deadline_seconds: 30, backoff_max_seconds: 20 } });
    for (const [query, body, field] of [
      ["", { topic_id: "elsewhere", max_delivery_attempts: 3 }, "topic_id"],
      ["", { filter: null }, "filter"],
      ["", { filter: { country: ["BR"] }, ack_deadline_seconds: 10 }, "filter"],
      ["?topic_id=elsewhere", { max_delivery_attempts: 3 }, "topic_id"],
    ] as const) {
      const answer = await call("PATCH", `/subscriptions/${subscriptionId}${query}`, body);
      expect(answer.status, JSON.stringify(body)).toBe(422);
      expect((answer.json as { detail: string }).detail).toMatch(new RegExp(`^${field} cannot be changed`));
    }
    const minAboveMax = await call("PATCH", `/subscriptions/${subscriptionId}`, { backoff_min_seconds: 21 });
    expect(minAboveMax).toMatchObject({
      status: 422,
      json: { detail: "backoff_min_seconds (21) must not be greater than backoff_max_seconds (20)" },
    });
    expect(await call("GET", `/subscriptions/${subscriptionId}`)).toMatchObject({ status: 200, json: patched.json });
    expect(await call("PATCH", `/subscriptions/${uniqueId("missing")}`, { ack_deadline_seconds: 30 })).toMatchObject({
      status: 404,
      json: { detail: "Subscription not found" },
    });
  });

  it("let a browser PATCH a subscription from an allowed origin", async () => {
    const own = await startTestServer({ FASTPUBSUB_API_CORS_ORIGINS: "https://app.example" });
    try {
      const preflight = await fetch(new URL("/subscriptions/some-id", own.url), {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "PATCH" },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-methods")?.split(", ")).toContain("PATCH");
    } finally {
      await own.close();
    }
  });
});

describe("a filter on UpdateSubscription", () => {
  it("is refused over Connect even when it is null", async () => {
    const api = createApi("connect-json", quiet.url);
    const subscriptionId = await queue(api, 0);
    for (const filter of [null, {}]) {
      const error = await expectCode(
        api.subscriptions.updateSubscription({ id: subscriptionId, maxDeliveryAttempts: 2, filter: fromJson(ValueSchema, filter) }),
        Code.InvalidArgument,
      );
      expect(error.rawMessage).toMatch(/^filter cannot be changed/);
    }
    expect((await api.subscriptions.getSubscription({ id: subscriptionId })).maxDeliveryAttempts).toBe(5);
  });
});
