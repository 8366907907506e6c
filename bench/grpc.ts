import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SubscriptionService } from "../gen/fastpubsub/v1/subscription_service_pb.ts";
import { TopicService } from "../gen/fastpubsub/v1/topic_service_pb.ts";
import type { Consumer, Driver, Publisher } from "./driver.ts";

/** fastpubsub over gRPC with the generated client, one HTTP/2 connection per loop. */
export function createGrpcDriver(baseUrl: string): Driver {
  let topic = "";
  const clients = () => {
    const transport = createGrpcTransport({ baseUrl });
    return { topics: createClient(TopicService, transport), subscriptions: createClient(SubscriptionService, transport) };
  };
  return {
    name: "fastpubsub gRPC",
    async setup(topicId, subscriptions) {
      topic = topicId;
      const admin = clients();
      await admin.topics.deleteTopic({ id: topic }).catch(() => undefined);
      await admin.topics.createTopic({ id: topic });
      for (const subscription of subscriptions) {
        await admin.subscriptions.createSubscription({
          id: subscription.id,
          topicId: topic,
          filter: fromJson(ValueSchema, subscription.filter),
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
