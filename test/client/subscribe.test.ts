import { setTimeout as sleep } from "node:timers/promises";
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  clientCredentials,
  createFastPubSubClient,
  DeadLetter,
  type FastPubSubClient,
  type Message,
  type Protocol,
} from "../../src/client.ts";
import { createDatabasePool } from "../../src/db/pool.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { expectCode } from "../support/expect-code.ts";
import { freePort } from "../support/ports.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { createTcpProxy } from "../support/tcp-proxy.ts";
import { waitFor } from "../support/wait.ts";

let server: TestServer;
let api: FastPubSubClient;
beforeAll(async () => {
  server = await startTestServer();
  api = createFastPubSubClient(server.url);
});
afterAll(async () => {
  await server.close();
});

/** Creates a topic `<id>-topic` and a subscription `id` to it with `settings`. */
async function createSubscription(client: FastPubSubClient, id: string, settings: { backoffMinSeconds?: number } = {}) {
  await client.topics.createTopic({ id: `${id}-topic` });
  await client.subscriptions.createSubscription({ id, topicId: `${id}-topic`, ...settings });
}

/** Publishes `{n}` for each n of `ns` to the topic of subscription `id`. */
async function publish(client: FastPubSubClient, id: string, ns: number[]) {
  await client.topics.publishMessages({ topicId: `${id}-topic`, messages: ns.map((n) => ({ n })) });
}

/** A handler that keeps what it is given, and a promise of the first `count` messages. */
function collector() {
  const messages: Message[] = [];
  const waiting: { count: number; resolve: () => void }[] = [];
  return {
    messages,
    handler(message: Message) {
      messages.push(message);
      for (const wait of waiting) if (messages.length >= wait.count) wait.resolve();
    },
    async received(count: number) {
      if (messages.length < count) await new Promise<void>((resolve) => waiting.push({ count, resolve }));
      return messages.map((message) => message.payload?.n);
    },
  };
}

const metrics = (client: FastPubSubClient, id: string) => client.subscriptions.getSubscriptionMetrics({ subscriptionId: id });

const reconnectCodes = [Code.Unavailable, Code.Internal, Code.DeadlineExceeded, Code.Unknown, Code.Aborted, Code.Canceled];

describe.each(["connect", "grpc", "grpc-web"] as const)("subscribe over %s", (protocol: Protocol) => {
  it("runs the handler for each published message and acks it", async () => {
    const client = createFastPubSubClient(server.url, { protocol });
    const id = `subscribe-acks-${protocol}`;
    await createSubscription(client, id);
    const { handler, received } = collector();
    const subscriber = client.subscribe(id, handler);
    await publish(client, id, [0, 1, 2, 3, 4]);
    await publish(client, id, [5, 6, 7, 8, 9]);
    expect((await received(10)).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await subscriber.close();
    await expect(subscriber.done).resolves.toBeUndefined();
    expect(await metrics(client, id)).toMatchObject({
      available: 0,
      delivered: 0,
      acked: 10,
      dlq: 0,
    });
  });
});

describe("subscribe", () => {
  it("nacks the message of a handler that throws, and runs the handler again when it comes back", async () => {
    const id = "subscribe-nack";
    await createSubscription(api, id, { backoffMinSeconds: 1 });
    const { handler, messages, received } = collector();
    const subscriber = api.subscribe(id, (message) => {
      handler(message);
      if (message.deliveryAttempts === 1) throw new Error("fails the first time");
    });
    await publish(api, id, [1]);
    await received(2);
    await subscriber.close();
    expect(messages.map((message) => message.deliveryAttempts)).toEqual([1, 2]);
    expect(messages[1]?.id).toBe(messages[0]?.id);
    expect(await metrics(api, id)).toMatchObject({
      available: 0,
      delivered: 0,
      acked: 1,
      dlq: 0,
    });
  });

  it("sends the message of a handler that throws a DeadLetter to the dead-letter queue at once, with its reason", async () => {
    const id = "subscribe-dead-letter";
    await createSubscription(api, id);
    const { handler, received } = collector();
    const subscriber = api.subscribe(id, (message) => {
      handler(message);
      if (message.payload?.n === 1) throw new DeadLetter("bad schema");
      if (message.payload?.n === 2) throw new DeadLetter();
      if (message.payload?.n === 3) throw new DeadLetter(`${"x".repeat(1023)}🎉 and more`);
    });
    await publish(api, id, [1, 2, 3, 4]);
    await received(4);
    await subscriber.close();
    expect(await metrics(api, id)).toMatchObject({ available: 0, delivered: 0, acked: 1, dlq: 3 });
    const { data } = await api.subscriptions.listDlqMessages({ subscriptionId: id });
    expect(data.map((message) => [message.payload?.n, message.deliveryAttempts, message.reason])).toEqual([
      [1, 1, "bad schema"],
      [2, 1, "nacked"],
      // Cut before the emoji, whose first half would be the 1,024th code unit.
      [3, 1, "x".repeat(1023)],
    ]);
  });

  it("runs at most maxOutstandingMessages handlers at once, and every message", async () => {
    const id = "subscribe-concurrency";
    await createSubscription(api, id);
    let running = 0;
    let mostRunning = 0;
    const { handler, received } = collector();
    const subscriber = api.subscribe(
      id,
      async (message) => {
        running++;
        mostRunning = Math.max(mostRunning, running);
        await sleep(20);
        running--;
        handler(message);
      },
      { maxOutstandingMessages: 3 },
    );
    await publish(
      api,
      id,
      Array.from({ length: 30 }, (_, n) => n),
    );
    expect(new Set(await received(30)).size).toBe(30);
    await subscriber.close();
    expect(mostRunning).toBeLessThanOrEqual(3);
    expect(await metrics(api, id)).toMatchObject({ available: 0, delivered: 0, acked: 30 });
  });

  it("locks the messages to the consumer id it is given", async () => {
    const id = "subscribe-consumer";
    await createSubscription(api, id);
    const { handler, received } = collector();
    const subscriber = api.subscribe(id, handler, { consumerId: "w1" });
    expect(subscriber.consumerId).toBe("w1");
    const others = [api.subscribe(id, handler), api.subscribe(id, handler)];
    expect(others[0]?.consumerId).not.toBe(others[1]?.consumerId);
    await Promise.all(others.map((other) => other.close()));
    await publish(api, id, [1]);
    await received(1);
    await subscriber.close();
  });

  it("close waits for the running handlers and sends their acks before it resolves, and stops receiving", async () => {
    const id = "subscribe-close";
    await createSubscription(api, id);
    const started = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    const subscriber = api.subscribe(id, async () => {
      started.resolve();
      await release.promise;
    });
    await publish(api, id, [1]);
    await started.promise;
    let closed = false;
    const closing = subscriber.close().then(() => {
      closed = true;
    });
    expect(await metrics(api, id)).toMatchObject({ delivered: 1, acked: 0 });
    expect(closed).toBe(false);
    release.resolve();
    await closing;
    expect(await metrics(api, id)).toMatchObject({
      available: 0,
      delivered: 0,
      acked: 1,
    });
    await publish(api, id, [2]);
    expect(await metrics(api, id)).toMatchObject({ available: 1, delivered: 0 });
  });

  it("stops with not_found when the subscription does not exist", async () => {
    const errors: ConnectError[] = [];
    const subscriber = api.subscribe("subscribe-missing", () => {}, { onError: (error) => errors.push(error) });
    await expectCode(subscriber.done, Code.NotFound);
    expect(errors.map((error) => Code[error.code])).toEqual(["NotFound"]);
    await subscriber.close();
  });

  it("stops with not_found when its subscription is deleted", async () => {
    const id = "subscribe-deleted";
    await createSubscription(api, id);
    const { handler, received } = collector();
    const subscriber = api.subscribe(id, handler);
    await publish(api, id, [1]);
    await received(1);
    await api.subscriptions.deleteSubscription({ id });
    await expectCode(subscriber.done, Code.NotFound);
  });

  it("stops with invalid_argument when the server refuses its request", async () => {
    await expectCode(api.subscribe("subscribe\u0000invalid", () => {}).done, Code.InvalidArgument);
  });

  it("stops with unauthenticated or permission_denied when its token does not let it consume", async () => {
    const secured = await startTestServer({ FASTPUBSUB_AUTH_ENABLED: "true", FASTPUBSUB_AUTH_SECRET_KEY: "subscribe-test-key-4c8d1e" });
    const db = await createDatabasePool(secured.databaseUrl, { maxPoolSize: 1 });
    try {
      const tokenOf = async (scopes: string) => {
        const { id, secret } = await registerClient(db, { name: scopes, scopes, isActive: true });
        return clientCredentials(secured.url, id, secret);
      };
      const admin = createFastPubSubClient(secured.url, { token: await tokenOf("*") });
      const id = "subscribe-secured";
      await createSubscription(admin, id);
      await expectCode(createFastPubSubClient(secured.url).subscribe(id, () => {}).done, Code.Unauthenticated);
      const consumer = createFastPubSubClient(secured.url, { token: await tokenOf("subscriptions:consume") });
      const error = await expectCode(consumer.subscribe(id, () => {}).done, Code.PermissionDenied);
      expect(error.rawMessage).toContain("pass ackDeadlineSeconds");

      const { handler, received } = collector();
      const subscriber = consumer.subscribe(id, handler, { ackDeadlineSeconds: 60 });
      await publish(admin, id, [1]);
      expect(await received(1)).toEqual([1]);
      await subscriber.close();
      expect(await metrics(admin, id)).toMatchObject({ delivered: 0, acked: 1 });
    } finally {
      await db.end();
      await secured.close();
    }
  });

  it("reconnects when its server restarts, and receives what is published then", async () => {
    const first = await startTestServer();
    const client = createFastPubSubClient(first.url, { protocol: "grpc" });
    const id = "subscribe-restart";
    await createSubscription(client, id);
    const errors: ConnectError[] = [];
    const { handler, received } = collector();
    const subscriber = client.subscribe(id, handler, { onError: (error) => errors.push(error) });
    await publish(client, id, [1]);
    await received(1);
    await waitFor(async () => ((await metrics(client, id)).acked === 1 ? true : undefined));
    await first.close();
    const second = await startTestServer({ FASTPUBSUB_API_PORT: new URL(first.url).port }, first.databaseUrl);
    try {
      await publish(client, id, [2]);
      expect(await received(2)).toEqual([1, 2]);
      await subscriber.close();
      await expect(subscriber.done).resolves.toBeUndefined();
      expect(errors.length).toBeGreaterThan(0);
      for (const error of errors) expect(reconnectCodes.map((code) => Code[code])).toContain(Code[error.code]);
      expect(await metrics(client, id)).toMatchObject({ delivered: 0, acked: 2 });
    } finally {
      await subscriber.close();
      await second.close();
    }
  });

  it("reconnects when its connection is cut, and receives what is published then", async () => {
    const port = await freePort();
    let proxy = createTcpProxy(port, Number(new URL(server.url).port));
    await proxy.start();
    const client = createFastPubSubClient(`http://127.0.0.1:${port}`);
    const id = "subscribe-cut";
    await createSubscription(client, id);
    const errors: ConnectError[] = [];
    const { handler, received } = collector();
    const subscriber = client.subscribe(id, handler, { onError: (error) => errors.push(error) });
    try {
      await publish(api, id, [1]);
      await received(1);
      await waitFor(async () => ((await metrics(api, id)).acked === 1 ? true : undefined));
      await proxy.close();
      proxy = createTcpProxy(port, Number(new URL(server.url).port));
      await proxy.start();
      await publish(api, id, [2]);
      expect(await received(2)).toEqual([1, 2]);
      await subscriber.close();
      expect(errors.length).toBeGreaterThan(0);
      for (const error of errors) expect(reconnectCodes.map((code) => Code[code])).toContain(Code[error.code]);
      expect(await metrics(api, id)).toMatchObject({ delivered: 0, acked: 2 });
    } finally {
      await subscriber.close();
      await proxy.close();
    }
  });
});
