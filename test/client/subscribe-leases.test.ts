// Needs per-subscription ack deadlines and ModifyAckDeadline (the leases branch): on a server
// without them this file fails, as it should.
import { setTimeout as sleep } from "node:timers/promises";
import type { ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFastPubSubClient, type FastPubSubClient } from "../../src/client.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let api: FastPubSubClient;
beforeAll(async () => {
  server = await startTestServer();
  api = createFastPubSubClient(server.url);
});
afterAll(async () => {
  await server.close();
});

describe("subscribe", () => {
  it("extends the lease of a message whose handler runs past the ack deadline, so it is acked, not redelivered", async () => {
    const id = "subscribe-leases";
    await api.topics.createTopic({ id: `${id}-topic` });
    // With one attempt, a lease that ran out would send the message to the dead-letter queue.
    await api.subscriptions.createSubscription({ id, topicId: `${id}-topic`, ackDeadlineSeconds: 2, maxDeliveryAttempts: 1 });
    expect((await api.subscriptions.getSubscription({ id })).ackDeadlineSeconds).toBe(2);

    const errors: ConnectError[] = [];
    const attempts: number[] = [];
    const finished = Promise.withResolvers<void>();
    const subscriber = api.subscribe(
      id,
      async (message) => {
        attempts.push(message.deliveryAttempts);
        await sleep(6_000);
        finished.resolve();
      },
      { onError: (error) => errors.push(error) },
    );
    await api.topics.publishMessages({ topicId: `${id}-topic`, messages: [{ n: 1 }] });
    await finished.promise;
    await subscriber.close();
    expect(errors.map((error) => error.message)).toEqual([]);
    expect(attempts).toEqual([1]);
    expect(await api.subscriptions.getSubscriptionMetrics({ subscriptionId: id })).toMatchObject({
      available: 0,
      delivered: 0,
      acked: 1,
      dlq: 0,
    });
  });
});
