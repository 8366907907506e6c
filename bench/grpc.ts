import { setTimeout as sleep } from "node:timers/promises";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { createFastPubSubClient, type FastPubSubClient } from "../src/client.ts";
import type { Consumer, Driver, Publisher } from "./driver.ts";

/**
 * fastpubsub over gRPC with the client users get (fastpubsub/client), one
 * HTTP/2 connection per loop; with `stream`, consumers read a StreamMessages
 * stream instead of polling.
 */
export function createGrpcDriver(baseUrl: string, options: { stream?: boolean } = {}): Driver {
  let topic = "";
  const clients = () => createFastPubSubClient(baseUrl, { protocol: "grpc" });
  return {
    name: options.stream ? "fastpubsub gRPC streaming" : "fastpubsub gRPC",
    async setup(topicId, subscriptions, settings = {}) {
      topic = topicId;
      const admin = clients();
      await admin.topics.deleteTopic({ id: topic }).catch(() => undefined);
      await admin.topics.createTopic({ id: topic, dedupKey: settings.dedupKey });
      for (const subscription of subscriptions) {
        await admin.subscriptions.createSubscription({
          id: subscription.id,
          topicId: topic,
          filter: fromJson(ValueSchema, subscription.filter),
          orderingKey: subscription.orderingKey,
        });
      }
    },
    async publisher(): Promise<Publisher> {
      const { topics } = clients();
      return {
        async publish(messages) {
          await topics.publishMessages({ topicId: topic, messages });
        },
        close: async () => {},
      };
    },
    async consumer(subscriptionId): Promise<Consumer> {
      const { subscriptions } = clients();
      const consumerId = `bench-${Math.random().toString(36).slice(2, 8)}`;
      if (options.stream) return streamConsumer(subscriptions, subscriptionId, consumerId);
      return {
        async consume(batchSize) {
          return (await subscriptions.consumeMessages({ subscriptionId, consumerId, batchSize })).data;
        },
        async ack(ids) {
          await subscriptions.ackMessages({ subscriptionId, messageIds: ids });
        },
        close: async () => {},
      };
    },
    async close() {
      await clients()
        .topics.deleteTopic({ id: topic })
        .catch(() => undefined);
    },
  };
}

/**
 * A consumer reading one stream: each consume returns the next response's
 * messages (heartbeats skipped), or none after a second, so that a loop can stop.
 */
function streamConsumer(subscriptions: FastPubSubClient["subscriptions"], subscriptionId: string, consumerId: string): Consumer {
  const abort = new AbortController();
  const responses = subscriptions
    .streamMessages({ subscriptionId, consumerId, maxOutstandingMessages: 1000 }, { signal: abort.signal })
    [Symbol.asyncIterator]();
  let pending: ReturnType<typeof responses.next> | undefined;
  return {
    async consume() {
      for (;;) {
        pending ??= responses.next();
        const next = await Promise.race([pending, sleep(1_000).then(() => undefined)]);
        if (next === undefined) return [];
        pending = undefined;
        if (next.done) return [];
        if (next.value.data.length > 0) return next.value.data;
      }
    },
    async ack(ids) {
      await subscriptions.ackMessages({ subscriptionId, messageIds: ids });
    },
    close: async () => {
      abort.abort();
      await pending?.catch(() => undefined);
    },
  };
}
