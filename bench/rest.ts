import http from "node:http";
import type { Consumer, Driver, Publisher } from "./driver.ts";

/** A keep-alive HTTP/1.1 client on one connection, for one benchmark loop. */
function connection(baseUrl: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL(baseUrl);
  const request = (method: string, path: string, body?: unknown) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method,
          path,
          headers: data === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(data) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(data);
    });
  const expect = async (method: string, path: string, statuses: number[], body?: unknown) => {
    const response = await request(method, path, body);
    if (!statuses.includes(response.status)) throw new Error(`${method} ${path}: ${response.status} ${response.text}`);
    return response.text;
  };
  return { expect, close: () => agent.destroy() };
}

/** fastpubsub over its REST paths, one keep-alive connection per loop. */
export function createRestDriver(baseUrl: string): Driver {
  let topic = "";
  return {
    name: "fastpubsub REST",
    async setup(topicId, subscriptions) {
      topic = topicId;
      const admin = connection(baseUrl);
      await admin.expect("DELETE", `/topics/${topic}`, [204, 404]);
      await admin.expect("POST", "/topics", [201], { id: topic });
      for (const subscription of subscriptions) {
        await admin.expect("POST", "/subscriptions", [201], { id: subscription.id, topic_id: topic, filter: subscription.filter });
      }
      admin.close();
    },
    async publisher(): Promise<Publisher> {
      const client = connection(baseUrl);
      return {
        async publish(messages) {
          await client.expect("POST", `/topics/${topic}/messages`, [204], messages);
        },
        close: async () => client.close(),
      };
    },
    async consumer(subscriptionId): Promise<Consumer> {
      const client = connection(baseUrl);
      const consumerId = `bench-${Math.random().toString(36).slice(2, 8)}`;
      return {
        async consume(batchSize) {
          const text = await client.expect("GET", `/subscriptions/${subscriptionId}/messages?consumer_id=${consumerId}&batch_size=${batchSize}`, [200]);
          return (JSON.parse(text) as { data: { id: string; payload: unknown }[] }).data;
        },
        async ack(ids) {
          await client.expect("POST", `/subscriptions/${subscriptionId}/acks`, [204], ids);
        },
        close: async () => client.close(),
      };
    },
    async close() {},
  };
}
