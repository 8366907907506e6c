import { Client } from "undici";
import type { Consumer, Driver, Publisher } from "./driver.ts";

/** An HTTP/1.1 keep-alive client on one connection (undici), for one benchmark loop. */
export function connection(baseUrl: string) {
  const client = new Client(baseUrl, { pipelining: 1 });
  const expect = async (method: "GET" | "POST" | "DELETE", path: string, statuses: number[], body?: unknown) => {
    const response = await client.request({
      method,
      path,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.body.text();
    if (!statuses.includes(response.statusCode)) throw new Error(`${method} ${path}: ${response.statusCode} ${text}`);
    return text;
  };
  return { expect, close: () => client.close() };
}

/**
 * fastpubsub over its REST paths, one keep-alive connection per loop; with
 * `waitSeconds`, consumers long-poll instead of polling.
 */
export function createRestDriver(baseUrl: string, options: { waitSeconds?: number } = {}): Driver {
  const wait = options.waitSeconds ? `&wait_seconds=${options.waitSeconds}` : "";
  let topic = "";
  return {
    name: options.waitSeconds ? "fastpubsub REST long-poll" : "fastpubsub REST",
    async setup(topicId, subscriptions, settings = {}) {
      topic = topicId;
      const admin = connection(baseUrl);
      await admin.expect("DELETE", `/topics/${topic}`, [204, 404]);
      await admin.expect("POST", "/topics", [201], { id: topic, dedup_key: settings.dedupKey });
      for (const subscription of subscriptions) {
        await admin.expect("POST", "/subscriptions", [201], {
          id: subscription.id,
          topic_id: topic,
          filter: subscription.filter,
          ordering_key: subscription.orderingKey,
        });
      }
      await admin.close();
    },
    async publisher(): Promise<Publisher> {
      const client = connection(baseUrl);
      return {
        async publish(messages) {
          await client.expect("POST", `/topics/${topic}/messages`, [204], messages);
        },
        close: () => client.close(),
      };
    },
    async consumer(subscriptionId): Promise<Consumer> {
      const client = connection(baseUrl);
      const consumerId = `bench-${Math.random().toString(36).slice(2, 8)}`;
      return {
        async consume(batchSize) {
          const text = await client.expect(
            "GET",
            `/subscriptions/${subscriptionId}/messages?consumer_id=${consumerId}&batch_size=${batchSize}${wait}`,
            [200],
          );
          return (JSON.parse(text) as { data: { id: string; payload: unknown }[] }).data;
        },
        async ack(ids) {
          await client.expect("POST", `/subscriptions/${subscriptionId}/acks`, [204], ids);
        },
        close: () => client.close(),
      };
    },
    async close() {
      const admin = connection(baseUrl);
      await admin.expect("DELETE", `/topics/${topic}`, [204, 404]);
      await admin.close();
    },
  };
}
