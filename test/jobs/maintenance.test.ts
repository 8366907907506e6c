import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "slonik";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { cleanupStuckMessages, getSubscriptionMetrics } from "../../src/db/messages.ts";
import { createDatabasePool } from "../../src/db/pool.ts";
import { maintainTables } from "../../src/jobs/maintenance.ts";
import { runCli } from "../support/cli.ts";
import { uniqueId } from "../support/ids.ts";
import { consume, metrics } from "../support/messages.ts";
import { type Api, createApi } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

/** Creates a topic with one subscription and publishes `count` messages to it. */
async function queue(api: Api, count: number, settings: { maxDeliveryAttempts?: number; backoff?: number } = {}) {
  const topicId = uniqueId("topic");
  const subscriptionId = uniqueId("sub");
  await api.topics.createTopic({ id: topicId });
  await api.subscriptions.createSubscription({
    id: subscriptionId,
    topicId,
    maxDeliveryAttempts: settings.maxDeliveryAttempts,
    backoffMinSeconds: settings.backoff ?? 1,
    backoffMaxSeconds: settings.backoff ?? 1,
  });
  for (let start = 0; start < count; start += 1000) {
    const size = Math.min(1000, count - start);
    await api.topics.publishMessages({ topicId, messages: Array.from({ length: size }, (_, n) => ({ n: start + n })) });
  }
  return subscriptionId;
}

describe("a delivery locked longer than FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS", () => {
  let server: TestServer;
  let api: Api;
  const cli = (command: string) =>
    runCli([command], { FASTPUBSUB_DATABASE_URL: server.databaseUrl, FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS: "1" });
  beforeAll(async () => {
    // The tests run the jobs themselves.
    server = await startTestServer({
      FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS: "1",
      FASTPUBSUB_EXPIRE_LEASES_INTERVAL_SECONDS: "0",
      FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "0",
    });
    api = createApi("grpc", server.url);
  });
  afterAll(async () => {
    await server.close();
  });

  it("is released by cleanup_stuck_messages as a failed attempt, whatever its lease", async () => {
    const subscriptionId = await queue(api, 2, { maxDeliveryAttempts: 5 });
    const delivered = await consume(api, subscriptionId);
    await api.subscriptions.modifyAckDeadline({
      subscriptionId,
      messageIds: delivered.map((message) => message.id),
      ackDeadlineSeconds: 600,
    });
    await sleep(1_200);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 2, acked: 0, dlq: 0 });

    const released = await cli("cleanup_stuck_messages");
    expect(released.code).toBe(0);
    expect(released.stdout).toMatch(/^released \d+ messages locked longer than 1 seconds\n$/);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 2, delivered: 0, acked: 0, dlq: 0 });
    // Released, they are no longer live deliveries.
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: delivered.map((message) => message.id) });
    expect(await metrics(api, subscriptionId)).toEqual({ available: 2, delivered: 0, acked: 0, dlq: 0 });
    const again = await waitFor(async () => {
      const messages = await consume(api, subscriptionId);
      return messages.length === 2 ? messages : undefined;
    });
    expect(again.map((message) => message.deliveryAttempts)).toEqual([2, 2]);
  });

  it("sends a message that keeps timing out to the dead-letter queue after max_delivery_attempts", async () => {
    const subscriptionId = await queue(api, 1, { maxDeliveryAttempts: 2 });
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [message] = await waitFor(async () => {
        const messages = await consume(api, subscriptionId);
        return messages.length > 0 ? messages : undefined;
      });
      expect(message?.deliveryAttempts).toBe(attempt);
      await sleep(1_100);
      expect((await cli("cleanup_stuck_messages")).code).toBe(0);
    }
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 1 });
    const dlq = await api.subscriptions.listDlqMessages({ subscriptionId });
    expect(dlq.data.map((message) => [message.payload, message.deliveryAttempts])).toEqual([[{ n: 0 }, 2]]);
  });

  it("is released once when several servers clean up at the same time", async () => {
    const subscriptionId = await queue(api, 50, { maxDeliveryAttempts: 5 });
    await consume(api, subscriptionId);
    await sleep(1_100);
    const pools = await Promise.all([1, 2, 3].map(() => createDatabasePool(server.databaseUrl, { maxPoolSize: 1 })));
    const released = await Promise.all(pools.map((pool) => cleanupStuckMessages(pool, 1)));
    await Promise.all(pools.map((pool) => pool.end()));
    expect(released.reduce((sum, n) => sum + n, 0)).toBeGreaterThanOrEqual(50);
    expect(await metrics(api, subscriptionId)).toEqual({ available: 50, delivered: 0, acked: 0, dlq: 0 });
  });
});

describe("the in-process cleanup", () => {
  let server: TestServer;
  let api: Api;
  beforeAll(async () => {
    server = await startTestServer({
      FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS: "1",
      FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: "1",
      FASTPUBSUB_CLEANUP_ACKED_MESSAGES_OLDER_THAN_SECONDS: "1",
      FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "1",
      FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS: "1",
    });
    api = createApi("connect-json", server.url);
  });
  afterAll(async () => {
    await server.close();
  });

  it("releases stuck messages to the dead-letter queue without cron", async () => {
    const subscriptionId = await queue(api, 3, { maxDeliveryAttempts: 1 });
    expect(await consume(api, subscriptionId)).toHaveLength(3);
    const settled = await waitFor(async () => {
      const counts = await metrics(api, subscriptionId);
      return counts.dlq === 3 ? counts : undefined;
    });
    expect(settled).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 3 });
  });

  it("forgets acks older than FASTPUBSUB_CLEANUP_ACKED_MESSAGES_OLDER_THAN_SECONDS without cron", async () => {
    const subscriptionId = await queue(api, 4);
    const delivered = await consume(api, subscriptionId);
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: delivered.map((message) => message.id) });
    expect((await metrics(api, subscriptionId)).acked).toBe(4);
    await waitFor(async () => ((await metrics(api, subscriptionId)).acked === 0 ? true : undefined));
    expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 0, acked: 0, dlq: 0 });
  });
});

describe("cleanup_acked_messages", () => {
  it("forgets the acks older than the threshold, prints how many, and leaves the rest", async () => {
    const server = await startTestServer({ FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "0" });
    try {
      const api = createApi("rest", server.url);
      const subscriptionId = await queue(api, 5);
      const delivered = await consume(api, subscriptionId);
      await api.subscriptions.ackMessages({ subscriptionId, messageIds: delivered.slice(0, 3).map((message) => message.id) });
      const env = { FASTPUBSUB_DATABASE_URL: server.databaseUrl, FASTPUBSUB_CLEANUP_ACKED_MESSAGES_OLDER_THAN_SECONDS: "3600" };
      const young = await runCli(["cleanup_acked_messages"], env);
      expect(young).toMatchObject({ code: 0, stdout: "forgot 0 acks older than 3600 seconds\n" });
      expect((await metrics(api, subscriptionId)).acked).toBe(3);
      await sleep(1_100);
      const old = await runCli(["cleanup_acked_messages"], { ...env, FASTPUBSUB_CLEANUP_ACKED_MESSAGES_OLDER_THAN_SECONDS: "1" });
      expect(old).toMatchObject({ code: 0, stdout: "forgot 3 acks older than 1 seconds\n" });
      expect(await metrics(api, subscriptionId)).toEqual({ available: 0, delivered: 2, acked: 0, dlq: 0 });
    } finally {
      await server.close();
    }
  });

  it.each(["cleanup_acked_messages", "cleanup_stuck_messages"])("explains %s with --help", async (command) => {
    const { code, stdout } = await runCli([command, "--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain(`$ fastpubsub ${command}`);
    expect(stdout).toContain("in-process");
  });
});

describe("the table maintenance", () => {
  it("folds the count deltas without changing the counts, and vacuums tables with many dead rows", async () => {
    const server = await startTestServer({ FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS: "0" });
    let subscriptionId: string;
    try {
      const api = createApi("grpc", server.url);
      subscriptionId = await queue(api, 1500);
      for (let round = 0; round < 10; round++) {
        const delivered = await consume(api, subscriptionId);
        await api.subscriptions.ackMessages({ subscriptionId, messageIds: delivered.map((message) => message.id).slice(0, 90) });
      }
      const before = await metrics(api, subscriptionId);
      expect(before).toEqual({ available: 500, delivered: 100, acked: 900, dlq: 0 });
    } finally {
      // Closing the server ends its connections, which report their dead rows to the statistics.
      await server.close();
    }
    const pool = await createDatabasePool(server.databaseUrl, { maxPoolSize: 2 });
    try {
      const deltas = () => pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM queue_counts`);
      expect(await deltas()).toBeGreaterThan(10);
      await waitFor(async () => {
        const dead = await pool.oneFirst(sql.type(z.object({ dead: z.bigint() }))`
          SELECT n_dead_tup AS dead FROM pg_stat_user_tables WHERE relname = 'messages'
        `);
        return dead > 1500n ? true : undefined;
      });
      expect(await maintainTables(pool, server.databaseUrl)).toContain("messages");
      expect(await deltas()).toBe(1);
      expect(await getSubscriptionMetrics(pool, subscriptionId)).toEqual({ available: 500n, delivered: 100n, acked: 900n, dlq: 0n });
      const vacuumed = await pool.oneFirst(sql.type(z.object({ vacuumed: z.boolean() }))`
        SELECT last_vacuum IS NOT NULL AS vacuumed FROM pg_stat_user_tables WHERE relname = 'messages'
      `);
      expect(vacuumed).toBe(true);
    } finally {
      await pool.end();
    }
  });
});
