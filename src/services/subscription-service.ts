import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { MessageSchema, SubscriptionSchema, type SubscriptionService } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import type { Config } from "../config/config.ts";
import type { Database } from "../db/database.ts";
import { messageIdFromUuid, messageUuid } from "../db/message-ids.ts";
import * as messages from "../db/messages.ts";
import { pageOf } from "../db/page.ts";
import * as subscriptions from "../db/subscriptions.ts";

/** Converts a subscriptions row into the API's Subscription; a null filter stays null. */
export function subscriptionFromRow(row: subscriptions.SubscriptionRow) {
  return create(SubscriptionSchema, {
    id: row.id,
    topicId: row.topic_id,
    filter: fromJson(ValueSchema, (row.filter ?? null) as JsonValue),
    maxDeliveryAttempts: row.max_delivery_attempts,
    backoffMinSeconds: row.backoff_min_seconds,
    backoffMaxSeconds: row.backoff_max_seconds,
    createdAt: timestampFromMs(row.created_at),
    ackDeadlineSeconds: row.ack_deadline_seconds,
  });
}

/** Converts a message row into the API's Message, its bigint id shown as a UUID. */
export function messageFromRow(subscriptionId: string, row: messages.MessageRow) {
  return create(MessageSchema, {
    id: messageUuid(row.id, row.created_at_ms),
    subscriptionId,
    payload: row.payload,
    deliveryAttempts: row.delivery_attempts,
    createdAt: timestampFromMs(row.created_at_ms),
  });
}

/** The bigint ids of message UUIDs; UUIDs that no message can have are left out. */
function messageIds(uuids: readonly string[]) {
  return uuids.map(messageIdFromUuid).filter((id) => id !== undefined);
}

const countMax = 0xffff_ffff;
const count = (value: bigint) => Number(value > BigInt(countMax) ? BigInt(countMax) : value);

type Settings = Pick<
  Config,
  "subscriptionMaxAttempts" | "subscriptionBackoffMinSeconds" | "subscriptionBackoffMaxSeconds" | "subscriptionAckDeadlineSeconds"
>;

/**
 * Implements SubscriptionService over the database: unset delivery settings
 * take the configured defaults, and a delivery stays live (ackable) for its
 * subscription's ack_deadline_seconds, or until ModifyAckDeadline moves it.
 */
export function createSubscriptionService(db: Database, settings: Settings): ServiceImpl<typeof SubscriptionService> {
  return {
    async createSubscription(request) {
      const backoffMinSeconds = request.backoffMinSeconds ?? settings.subscriptionBackoffMinSeconds;
      const backoffMaxSeconds = request.backoffMaxSeconds ?? settings.subscriptionBackoffMaxSeconds;
      if (backoffMinSeconds > backoffMaxSeconds) {
        throw new ConnectError(
          `backoff_min_seconds (${backoffMinSeconds}) must not be greater than backoff_max_seconds (${backoffMaxSeconds})`,
          Code.InvalidArgument,
        );
      }
      const row = await subscriptions.createSubscription(db.pool, {
        id: request.id,
        topicId: request.topicId,
        filter: request.filter ? toJson(ValueSchema, request.filter) : null,
        maxDeliveryAttempts: request.maxDeliveryAttempts ?? settings.subscriptionMaxAttempts,
        backoffMinSeconds,
        backoffMaxSeconds,
        ackDeadlineSeconds: request.ackDeadlineSeconds ?? settings.subscriptionAckDeadlineSeconds,
      });
      return subscriptionFromRow(row);
    },
    async getSubscription(request) {
      return subscriptionFromRow(await subscriptions.getSubscription(db.pool, request.id));
    },
    async listSubscriptions(request) {
      const { offset, limit } = pageOf(request);
      return { data: (await subscriptions.listSubscriptions(db.pool, offset, limit)).map(subscriptionFromRow) };
    },
    async updateSubscription(request) {
      // The proto has these fields so that a client that sets them hears why nothing changed.
      const fixed = request.topicId !== undefined ? "topic_id" : request.filter !== undefined ? "filter" : undefined;
      if (fixed) throw new ConnectError(`${fixed} cannot be changed: a subscription keeps its topic and filter`, Code.InvalidArgument);
      const row = await subscriptions.updateSubscription(db.pool, request.id, {
        maxDeliveryAttempts: request.maxDeliveryAttempts,
        backoffMinSeconds: request.backoffMinSeconds,
        backoffMaxSeconds: request.backoffMaxSeconds,
        ackDeadlineSeconds: request.ackDeadlineSeconds,
      });
      return subscriptionFromRow(row);
    },
    async deleteSubscription(request) {
      await subscriptions.deleteSubscription(db.pool, request.id);
      return {};
    },
    async consumeMessages(request) {
      const rows = await messages.consumeMessages(db.queue, request.subscriptionId, request.consumerId, request.batchSize ?? 10);
      return { data: rows.map((row) => messageFromRow(request.subscriptionId, row)) };
    },
    async ackMessages(request) {
      await messages.ackMessages(db.queue, request.subscriptionId, messageIds(request.messageIds), request.consumerId);
      return {};
    },
    async nackMessages(request) {
      await messages.nackMessages(db.queue, request.subscriptionId, messageIds(request.messageIds), {
        consumerId: request.consumerId,
        delaySeconds: request.delaySeconds,
      });
      return {};
    },
    async modifyAckDeadline(request) {
      // The validation interceptor refuses it first; an unset deadline must never read as 0 (release).
      const seconds = request.ackDeadlineSeconds;
      if (seconds === undefined) throw new ConnectError("ack_deadline_seconds is required", Code.InvalidArgument);
      await messages.modifyAckDeadline(db.queue, request.subscriptionId, messageIds(request.messageIds), seconds, request.consumerId);
      return {};
    },
    streamMessages() {
      throw new ConnectError("not implemented yet", Code.Unimplemented);
    },
    async listDlqMessages(request) {
      const { offset, limit } = pageOf(request);
      const rows = await messages.listDlqMessages(db.pool, request.subscriptionId, offset, limit);
      return { data: rows.map((row) => messageFromRow(request.subscriptionId, row)) };
    },
    async reprocessDlqMessages(request) {
      await messages.reprocessDlqMessages(db.pool, request.subscriptionId, messageIds(request.messageIds));
      return {};
    },
    async getSubscriptionMetrics(request) {
      const metrics = await messages.getSubscriptionMetrics(db.pool, request.subscriptionId);
      return {
        subscriptionId: request.subscriptionId,
        available: count(metrics.available),
        delivered: count(metrics.delivered),
        acked: count(metrics.acked),
        dlq: count(metrics.dlq),
      };
    },
  };
}
