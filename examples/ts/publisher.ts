/**
 * Publishes COUNT messages to TOPIC in batches, creating the topic and a
 * subscription SUBSCRIPTION to it when they do not exist yet.
 *
 *   npm run example -- publisher --url http://localhost:8000 --protocol grpc --count 1000
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { createFastPubSubClient } from "fastpubsub/client";
import { exampleOptions } from "./options.ts";

const { url, protocol, token, topic, subscription, count, batchSize } = exampleOptions();
const client = createFastPubSubClient(url, { protocol, token });

/** Runs a create call, treating "already exists" as done. */
async function ensure(create: () => Promise<unknown>) {
  try {
    await create();
  } catch (error) {
    if (ConnectError.from(error).code !== Code.AlreadyExists) throw error;
  }
}

await ensure(() => client.topics.createTopic({ id: topic }));
await ensure(() => client.subscriptions.createSubscription({ id: subscription, topicId: topic }));

for (let sent = 0; sent < count; sent += batchSize) {
  const messages = Array.from({ length: Math.min(batchSize, count - sent) }, (_, n) => ({
    event: "order.created",
    order: sent + n,
    at: new Date().toISOString(),
  }));
  await client.topics.publishMessages({ topicId: topic, messages });
}
console.log(`published ${count} messages to ${topic}`);
