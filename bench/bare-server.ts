/**
 * A reference point, not the product: fastpubsub's own SQL functions behind
 * the leanest node:http server that answers the REST paths the benchmark
 * uses, with no Connect, protobuf, interceptors, auth, logs or metrics and no
 * input checks. The benchmark's `bare` target measures it, to tell the cost of
 * the HTTP hop itself from the cost of the server's layers.
 *
 * `node bench/bare-server.ts DATABASE_URL` prints its URL on stdout.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import type { QueueClient } from "../src/db/database.ts";
import { messageIdFromUuid, messageUuid } from "../src/db/message-ids.ts";
import { ackMessages, consumeMessages, publishMessages } from "../src/db/messages.ts";
import { migrate } from "../src/db/migrate.ts";

// As the server does at start, so that the bare server also runs on a database it is the first to use.
await migrate(process.argv[2] ?? "");

const pool = new pg.Pool({ connectionString: process.argv[2], min: 5, max: 10 });
// The server's own queries of the hot path, on a plain pool.
const queue: QueueClient = { raw: pool, query: (config) => pool.query(config) };

async function readJson(req: IncomingMessage) {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString());
}

function end(res: ServerResponse, status: number, body?: unknown) {
  res.statusCode = status;
  if (body === undefined) return res.end();
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify(body));
}

async function answer(req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? "/", "http://localhost");
  const [, collection, id = "", action] = url.pathname.split("/");
  const route = `${req.method} /${collection}${id ? "/{id}" : ""}${action ? `/${action}` : ""}`;
  switch (route) {
    case "POST /topics/{id}/messages": {
      await publishMessages(queue, id, await readJson(req));
      return end(res, 204);
    }
    case "GET /subscriptions/{id}/messages": {
      const consumerId = url.searchParams.get("consumer_id") ?? "";
      const rows = await consumeMessages(queue, id, consumerId, Number(url.searchParams.get("batch_size") ?? 10));
      const data = rows.map((row) => ({
        id: messageUuid(row.id, row.created_at_ms),
        subscription_id: id,
        payload: JSON.parse(row.payload),
        delivery_attempts: row.delivery_attempts,
        created_at: new Date(row.created_at_ms).toISOString(),
      }));
      return end(res, 200, { data });
    }
    case "POST /subscriptions/{id}/acks": {
      const ids = ((await readJson(req)) as string[]).map(messageIdFromUuid).filter((messageId) => messageId !== undefined);
      await ackMessages(queue, id, ids);
      return end(res, 204);
    }
    case "POST /topics": {
      const topic = await readJson(req);
      await pool.query("SELECT create_topic($1)", [topic.id]);
      return end(res, 201, topic);
    }
    case "POST /subscriptions": {
      const subscription = await readJson(req);
      const filter = subscription.filter == null ? null : JSON.stringify(subscription.filter);
      await pool.query("SELECT create_subscription($1, $2, $3, 5, 1, 60, 60)", [subscription.id, subscription.topic_id, filter]);
      return end(res, 201, subscription);
    }
    case "DELETE /topics/{id}": {
      const deleted = await pool.query("SELECT delete_topic($1)", [id]).catch(() => undefined);
      return end(res, deleted ? 204 : 404);
    }
    default:
      return end(res, 404);
  }
}

const server = createServer((req, res) => {
  answer(req, res).catch((error: unknown) => end(res, 500, { detail: String(error) }));
});
server.listen(0, "127.0.0.1", () => {
  console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
