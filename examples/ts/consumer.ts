/**
 * Consumes SUBSCRIPTION by streaming until COUNT messages were processed. The
 * client's subscribe opens a StreamMessages stream and runs processMessage for
 * up to --max-outstanding messages at once; it acks those that succeed and nacks
 * the others (they come back after the subscription's backoff), extends the
 * lease of a message still being processed, and reconnects when the stream breaks.
 *
 *   npm run example -- consumer --url http://localhost:8000 --protocol grpc --count 1000
 */
import { createFastPubSubClient, type Message } from "fastpubsub/client";
import { exampleOptions } from "./options.ts";

const { url, protocol, token, subscription, count, maxOutstanding } = exampleOptions();
const client = createFastPubSubClient(url, { protocol, token });

/** The work done for one message; a message that throws is nacked. */
async function processMessage(message: Message) {
  if (typeof message.payload?.order !== "number") throw new Error(`unexpected payload in ${message.id}`);
}

let processed = 0;
const enough = Promise.withResolvers<void>();
const subscriber = client.subscribe(
  subscription,
  async (message) => {
    await processMessage(message);
    if (++processed >= count) enough.resolve();
  },
  { maxOutstandingMessages: maxOutstanding },
);
// done rejects with the error that stops the subscriber (e.g. not_found).
await Promise.race([enough.promise, subscriber.done]);
// close waits for the messages still being processed and sends their acks.
await subscriber.close();
console.log(`processed ${processed} messages from ${subscription}`);
