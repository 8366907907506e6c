/**
 * A reference point, not the product: fastpubsub's own SQL functions behind
 * the leanest gRPC server the project's shape allows — connect-node on a
 * plain node:http2 server, serving the twins of TopicService and
 * SubscriptionService (payloads as Struct bytes, src/wire/struct-twins.ts)
 * with the product's own Struct codec, and no interceptors, auth, logs,
 * metrics or input checks. The benchmark's `bare-grpc` target measures it, to
 * tell what connect-es, HTTP/2 and the codec cost from what the server's
 * layers cost, as `bare` does for REST.
 *
 * `node bench/bare-grpc-server.ts DATABASE_URL` prints its URL on stdout.
 */
import { createServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { type JsonObject, toJson } from "@bufbuild/protobuf";
import { timestampFromMs, type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import pg from "pg";
import { SubscriptionService } from "../gen/fastpubsub/v1/subscription_service_pb.ts";
import { TopicService } from "../gen/fastpubsub/v1/topic_service_pb.ts";
import type { QueueClient } from "../src/db/database.ts";
import { messageIdFromUuid, messageUuid } from "../src/db/message-ids.ts";
import { ackMessages, consumeMessages, publishMessages } from "../src/db/messages.ts";
import { migrate } from "../src/db/migrate.ts";
import { structFromBinary, structToBinary } from "../src/wire/struct-binary.ts";
import { twinOf } from "../src/wire/struct-twins.ts";

// As the server does at start, so that the bare server also runs on a database it is the first to use.
await migrate(process.argv[2] ?? "");

const pool = new pg.Pool({ connectionString: process.argv[2], min: 5, max: 10 });
// The server's own queries of the hot path, on a plain pool.
const queue: QueueClient = { raw: pool, query: (config) => pool.query(config) };

// Twin messages are plain objects here: the fields this server reads and writes, payloads as Struct bytes.
type Fields = Record<string, unknown>;
const fields = (message: unknown) => message as Fields;

function routes(router: ConnectRouter) {
  router.service(twinOf(TopicService).twin, {
    async createTopic(request: unknown) {
      const { id } = fields(request);
      await pool.query("SELECT create_topic($1)", [id]);
      return { id };
    },
    async deleteTopic(request: unknown) {
      const deleted = await pool.query("SELECT delete_topic($1)", [fields(request).id]).catch(() => undefined);
      if (!deleted) throw new ConnectError("topic not found", Code.NotFound);
      return {};
    },
    async publishMessages(request: unknown) {
      const { topicId, messages } = fields(request) as { topicId: string; messages: Uint8Array[] };
      await publishMessages(queue, topicId, messages.map(structFromBinary));
      return {};
    },
  } as never);
  router.service(twinOf(SubscriptionService).twin, {
    async createSubscription(request: unknown) {
      const { id, topicId, filter } = fields(request) as { id: string; topicId: string; filter?: Value };
      const json = filter === undefined ? null : toJson(ValueSchema, filter);
      await pool.query("SELECT create_subscription($1, $2, $3, 5, 1, 60, 60)", [id, topicId, json === null ? null : JSON.stringify(json)]);
      return { id, topicId };
    },
    async consumeMessages(request: unknown) {
      const { subscriptionId, consumerId, batchSize } = fields(request) as {
        subscriptionId: string;
        consumerId: string;
        batchSize?: number;
      };
      const rows = await consumeMessages(queue, subscriptionId, consumerId, batchSize ?? 10);
      return {
        data: rows.map((row) => ({
          id: messageUuid(row.id, row.created_at_ms),
          subscriptionId,
          payload: structToBinary(JSON.parse(row.payload) as JsonObject),
          deliveryAttempts: row.delivery_attempts,
          createdAt: timestampFromMs(row.created_at_ms),
        })),
      };
    },
    async ackMessages(request: unknown) {
      const { subscriptionId, messageIds } = fields(request) as { subscriptionId: string; messageIds: string[] };
      await ackMessages(
        queue,
        subscriptionId,
        messageIds.map(messageIdFromUuid).filter((id) => id !== undefined),
      );
      return {};
    },
  } as never);
}

const server = createServer(connectNodeAdapter({ routes }));
server.listen(0, "127.0.0.1", () => {
  console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
