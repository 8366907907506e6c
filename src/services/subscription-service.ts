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
import type { Waiting } from "../waiting/waiting.ts";
import { payloadFromText } from "../wire/payload-text.ts";

/** Converts a subscriptions row into the API's Subscription; a null filter stays null, and ordering_key is set only when it is. */
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
    orderingKey: row.ordering_key ?? undefined,
  });
}

/** Converts a message row into the API's Message, its bigint id shown as a UUID. */
export function messageFromRow(subscriptionId: string, row: messages.MessageRow) {
  return create(MessageSchema, {
    id: messageUuid(row.id, row.created_at_ms),
    subscriptionId,
    // The payload stays the JSON text PostgreSQL returned until the protocol writes it.
    payload: payloadFromText(row.payload),
    deliveryAttempts: row.delivery_attempts,
    createdAt: timestampFromMs(row.created_at_ms),
  });
}

/** Converts a dead letter's row into the API's Message, with when and why it died. */
export function deadLetterFromRow(subscriptionId: string, row: messages.DeadLetterRow) {
  const message = messageFromRow(subscriptionId, row);
  message.deadLetteredAt = timestampFromMs(row.dead_at_ms);
  message.reason = row.reason;
  return message;
}

/** The bigint ids of message UUIDs; UUIDs that no message can have are left out. */
function messageIds(uuids: readonly string[]) {
  return uuids.map(messageIdFromUuid).filter((id) => id !== undefined);
}

// A stream takes at most this many messages per statement, like a consume's largest batch.
const streamBatchSize = 100;
// A stream with nothing to deliver sends an empty response this often, so that proxies keep it open.
const streamHeartbeatMs = 15_000;

// A bulk dead-letter operation handles this many per statement, each its own short transaction.
export const dlqBatchSize = 5000;

/**
 * Runs a bulk dead-letter operation batch by batch until a batch finds nothing to do; the
 * first batch fixes the database time the others stop at. Returns how many it handled.
 */
async function inBatches(batch: (deadBefore: string | undefined) => Promise<{ processed: number; dead_before: string }>) {
  let total = 0;
  let deadBefore: string | undefined;
  for (;;) {
    const { processed, dead_before } = await batch(deadBefore);
    total += processed;
    deadBefore = dead_before;
    // A short batch is not the end: it may have skipped rows that another call held at the time.
    if (processed === 0) return total;
  }
}

/** Refuses a bulk request that both names messages and asks for all of them. */
function checkAllOrIds(request: { all: boolean; messageIds: readonly string[] }) {
  if (request.all && request.messageIds.length > 0) {
    throw new ConnectError("message_ids must be empty when all is true", Code.InvalidArgument);
  }
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
export function createSubscriptionService(db: Database, settings: Settings, waiting: Waiting): ServiceImpl<typeof SubscriptionService> {
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
        orderingKey: request.orderingKey,
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
      // Its waiters in this process learn it at once (others from their fallback check).
      waiting.deleted(request.id);
      return {};
    },
    async consumeMessages(request, context) {
      const { subscriptionId, consumerId } = request;
      const batchSize = request.batchSize ?? 10;
      const consume = async () => {
        const rows = await messages.consumeMessages(db.queue, subscriptionId, consumerId, batchSize);
        // A full batch may have left more behind for another waiter.
        if (rows.length === batchSize) waiting.passOn(subscriptionId);
        return { data: rows.map((row) => messageFromRow(subscriptionId, row)) };
      };
      const waitMs = (request.waitSeconds ?? 0) * 1000;
      if (waitMs === 0) return consume();
      const until = performance.now() + waitMs;
      const waiter = await waiting.arm(subscriptionId, "long-poll");
      try {
        while (!waiting.closed) {
          const answer = await consume();
          if (answer.data.length > 0) return answer;
          if ((await waiter.wait(until - performance.now(), context.signal)) !== "woken") break;
        }
        return { data: [] };
      } finally {
        waiter.disarm();
      }
    },
    async *streamMessages(request, context) {
      const { subscriptionId, consumerId } = request;
      const maxOutstanding = request.maxOutstandingMessages ?? 100;
      const waiter = await waiting.arm(subscriptionId, "stream");
      try {
        let quietSince = performance.now();
        // What this stream delivered since it last counted, over that count: acks, nacks and expiries only lower it.
        let outstandingAtMost: number | undefined;
        for (;;) {
          if (waiting.closed) throw new ConnectError("the server is shutting down; reconnect", Code.Unavailable);
          const batch = await messages.streamMessages(db.queue, subscriptionId, consumerId, {
            maxOutstanding,
            batchSize: streamBatchSize,
            outstandingAtMost,
          });
          outstandingAtMost = batch.outstanding;
          if (batch.rows.length > 0) {
            yield { data: batch.rows.map((row) => messageFromRow(subscriptionId, row)) };
            quietSince = performance.now();
          }
          // At the limit by the bound only: count at once rather than wait.
          if (batch.outstanding >= maxOutstanding && !batch.counted) continue;
          // A full batch with room left: more may be ready at once.
          if (batch.rows.length === streamBatchSize && batch.outstanding < maxOutstanding) continue;
          waiter.full = batch.outstanding >= maxOutstanding;
          // Heartbeats cost no statement: whatever becomes ready wakes the waiter.
          let end = await waiter.wait(quietSince + streamHeartbeatMs - performance.now(), context.signal);
          for (; end === "timeout"; end = await waiter.wait(streamHeartbeatMs, context.signal)) {
            yield { data: [] };
            quietSince = performance.now();
          }
          if (end === "aborted") return;
        }
      } finally {
        waiter.disarm();
      }
    },
    async ackMessages(request) {
      const acked = await messages.ackMessages(db.queue, request.subscriptionId, messageIds(request.messageIds), request.consumerId);
      if (acked > 0) waiting.released(request.subscriptionId, false);
      return {};
    },
    async nackMessages(request) {
      if (request.delaySeconds !== undefined && request.deadLetter) {
        throw new ConnectError("delay_seconds cannot be combined with dead_letter: true", Code.InvalidArgument);
      }
      const released = await messages.nackMessages(db.queue, request.subscriptionId, messageIds(request.messageIds), {
        consumerId: request.consumerId,
        delaySeconds: request.delaySeconds,
        deadLetter: request.deadLetter,
        reason: request.reason,
      });
      // A nack with no delay makes the messages available at once; a dead-lettering one gives a full stream room.
      if (released > 0) waiting.released(request.subscriptionId, request.delaySeconds === 0);
      return {};
    },
    async modifyAckDeadline(request) {
      // The validation interceptor refuses it first; an unset deadline must never read as 0 (release).
      const seconds = request.ackDeadlineSeconds;
      if (seconds === undefined) throw new ConnectError("ack_deadline_seconds is required", Code.InvalidArgument);
      const changed = await messages.modifyAckDeadline(
        db.queue,
        request.subscriptionId,
        messageIds(request.messageIds),
        seconds,
        request.consumerId,
      );
      // A deadline of 0 makes the messages available at once; any change may give a stream at its limit room.
      if (changed > 0) waiting.released(request.subscriptionId, seconds === 0);
      return {};
    },
    async listDlqMessages(request) {
      const { offset, limit } = pageOf(request);
      const rows = await messages.listDlqMessages(db.pool, request.subscriptionId, offset, limit);
      return { data: rows.map((row) => deadLetterFromRow(request.subscriptionId, row)) };
    },
    async reprocessDlqMessages(request) {
      checkAllOrIds(request);
      const { subscriptionId } = request;
      if (!request.all) {
        const revived = await messages.reprocessDlqMessages(db.pool, subscriptionId, messageIds(request.messageIds));
        if (revived > 0) waiting.passOn(subscriptionId);
        return {};
      }
      await inBatches(async (deadBefore) => {
        const batch = await messages.reprocessAllDlqMessages(db.pool, subscriptionId, deadBefore, dlqBatchSize);
        // Consumers may start on each batch while the next is moved.
        if (batch.processed > 0) waiting.passOn(subscriptionId);
        return batch;
      });
      return {};
    },
    async purgeDlqMessages(request) {
      checkAllOrIds(request);
      const { subscriptionId } = request;
      if (!request.all) {
        await messages.purgeDlqMessages(db.pool, subscriptionId, messageIds(request.messageIds));
        return {};
      }
      await inBatches((deadBefore) => messages.purgeAllDlqMessages(db.pool, subscriptionId, deadBefore, dlqBatchSize));
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
