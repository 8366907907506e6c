/**
 * Consumes SUBSCRIPTION until COUNT messages were processed: consume a batch,
 * process each message, ack the ones that succeeded and nack the others (they
 * come back after the subscription's backoff). When the queue is empty it
 * waits a little longer each time, up to a second, so that an idle consumer
 * costs almost nothing; a streaming RPC would replace exactly this loop.
 *
 *   npm run example -- consumer --url http://localhost:8000 --protocol grpc --count 1000
 */
import { setTimeout as sleep } from "node:timers/promises";
import { createFastPubSubClient, type Message } from "fastpubsub/client";
import { exampleOptions } from "./options.ts";

const { url, protocol, token, subscription, count, batchSize } = exampleOptions();
const client = createFastPubSubClient(url, { protocol, token });
const consumerId = `example-${process.pid}`;

/** The work done for one message; a message that throws is nacked. */
async function processMessage(message: Message) {
  if (typeof message.payload?.order !== "number") throw new Error(`unexpected payload in ${message.id}`);
}

let processed = 0;
let idleMs = 0;
while (processed < count) {
  const { data } = await client.subscriptions.consumeMessages({ subscriptionId: subscription, consumerId, batchSize });
  if (data.length === 0) {
    idleMs = Math.min(1000, Math.max(10, idleMs * 2));
    await sleep(idleMs);
    continue;
  }
  idleMs = 0;
  const outcomes = await Promise.allSettled(data.map(processMessage));
  const acks = data.filter((_, index) => outcomes[index]?.status === "fulfilled").map((message) => message.id);
  const nacks = data.filter((_, index) => outcomes[index]?.status === "rejected").map((message) => message.id);
  if (acks.length > 0) await client.subscriptions.ackMessages({ subscriptionId: subscription, messageIds: acks });
  if (nacks.length > 0) await client.subscriptions.nackMessages({ subscriptionId: subscription, messageIds: nacks });
  processed += acks.length;
}
console.log(`processed ${processed} messages from ${subscription}`);
