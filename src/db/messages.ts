import type { JsonObject } from "@bufbuild/protobuf";
import { sql } from "slonik";
import { z } from "zod";
import type { QueueClient } from "./database.ts";
import type { DatabaseConnection } from "./pool.ts";
import { textFormsOf } from "./text-forms.ts";

/**
 * A message as the message functions return it: its payload as the JSON text it
 * is stored as (a json column read as text is not parsed), and ms since the epoch,
 * which parse faster than timestamps.
 */
export interface MessageRow {
  id: string;
  payload: string;
  delivery_attempts: number;
  created_at_ms: number;
}

// The hot path runs named (prepared) statements on the plain pg pool; the pool drops the names when told to.

/**
 * Routes a batch of payloads to the topic's subscriptions, ready at `availableAt` (now when
 * undefined), dropping those a de-duplicated topic has seen within its window; FP404 for a
 * missing topic. Returns the rows routed.
 */
export async function publishMessages(
  queue: QueueClient,
  topicId: string,
  payloads: readonly JsonObject[],
  availableAt?: Date,
): Promise<number> {
  const text = JSON.stringify(payloads);
  const { rows } = await queue.query<{ routed: number }>({
    name: "publish_messages",
    text: "SELECT publish_messages($1, $2::json, $3::jsonb, $4::timestamptz) AS routed",
    values: [topicId, text, textFormsOf(payloads, text), availableAt?.toISOString() ?? null],
  });
  return rows[0]?.routed ?? 0;
}

/** Locks up to `batchSize` available messages of a subscription to one consumer; FP404 for a missing subscription. */
export async function consumeMessages(queue: QueueClient, subscriptionId: string, consumerId: string, batchSize: number) {
  const { rows } = await queue.query<MessageRow>({
    name: "consume_messages",
    text: `SELECT id, payload::text, delivery_attempts, floor(extract(epoch FROM created_at) * 1000)::float8 AS created_at_ms
           FROM consume_messages($1, $2, $3)`,
    values: [subscriptionId, consumerId, batchSize],
  });
  return rows;
}

/** Acks the messages whose delivery is live (held by `consumerId`, when given); returns how many. */
export async function ackMessages(queue: QueueClient, subscriptionId: string, ids: readonly string[], consumerId?: string) {
  const { rows } = await queue.query<{ acked: number }>({
    name: "ack_messages",
    text: "SELECT ack_messages($1, $2::bigint[], $3) AS acked",
    values: [subscriptionId, ids, consumerId ?? null],
  });
  return rows[0]?.acked ?? 0;
}

/**
 * Nacks the messages whose delivery is live (held by `consumerId`, when given):
 * ready again after `delaySeconds`, or after the backoff when it is undefined,
 * or dead-lettered ("max_delivery_attempts") once their attempts are used up;
 * with `deadLetter`, dead-lettered at once with `reason` ("nacked" when undefined).
 * Returns how many.
 */
export async function nackMessages(
  queue: QueueClient,
  subscriptionId: string,
  ids: readonly string[],
  options: { consumerId?: string; delaySeconds?: number; deadLetter?: boolean; reason?: string } = {},
) {
  const { rows } = await queue.query<{ released: number }>({
    name: "nack_messages",
    text: "SELECT nack_messages($1, $2::bigint[], $3, $4, $5, $6) AS released",
    values: [
      subscriptionId,
      ids,
      options.consumerId ?? null,
      options.delaySeconds ?? null,
      options.deadLetter ?? false,
      options.reason ?? null,
    ],
  });
  return rows[0]?.released ?? 0;
}

/**
 * Moves the lease end of live deliveries (held by `consumerId`, when given) to
 * `ackDeadlineSeconds` from now, or with 0 releases them at once as failed
 * attempts; returns how many it changed.
 */
export async function modifyAckDeadline(
  queue: QueueClient,
  subscriptionId: string,
  ids: readonly string[],
  ackDeadlineSeconds: number,
  consumerId?: string,
) {
  const { rows } = await queue.query<{ changed: number }>({
    name: "modify_ack_deadline",
    text: "SELECT modify_ack_deadline($1, $2::bigint[], $3, $4) AS changed",
    values: [subscriptionId, ids, consumerId ?? null, ackDeadlineSeconds],
  });
  return rows[0]?.changed ?? 0;
}

/** A dead letter as list_dlq_messages returns it: a message row, with when (ms since the epoch) and why it died. */
const DeadLetterRow = z.object({
  id: z.string(),
  payload: z.string(),
  delivery_attempts: z.number(),
  created_at_ms: z.number(),
  dead_at_ms: z.number(),
  reason: z.string(),
});

/** A dead letter: a message row, with when (ms since the epoch) and why it died. */
export type DeadLetterRow = z.infer<typeof DeadLetterRow>;

/** Returns a page of a subscription's dead letters, oldest first. */
export function listDlqMessages(db: DatabaseConnection, subscriptionId: string, offset: number, limit: number) {
  return db.any(sql.type(DeadLetterRow)`
    SELECT id::text, payload::text, delivery_attempts, floor(extract(epoch FROM created_at) * 1000)::float8 AS created_at_ms,
           floor(extract(epoch FROM dead_at) * 1000)::float8 AS dead_at_ms, reason
    FROM list_dlq_messages(${subscriptionId}, ${offset}, ${limit})
  `);
}

/** Moves dead letters back to the queue with their attempts reset; returns how many. */
export function reprocessDlqMessages(db: DatabaseConnection, subscriptionId: string, ids: readonly string[]) {
  return db.oneFirst(sql.type(z.object({ revived: z.number() }))`
    SELECT reprocess_dlq_messages(${subscriptionId}, ${sql.array(ids, "int8")}) AS revived
  `);
}

/** Deletes dead letters; returns how many. */
export function purgeDlqMessages(db: DatabaseConnection, subscriptionId: string, ids: readonly string[]) {
  return db.oneFirst(sql.type(z.object({ purged: z.number() }))`
    SELECT purge_dlq_messages(${subscriptionId}, ${sql.array(ids, "int8")}) AS purged
  `);
}

/**
 * One batch of a bulk dead-letter operation: how many dead letters it handled, and the
 * database's time that bounds the operation (text, to keep its microseconds), for the next batch.
 */
const DeadLetterBatchRow = z.object({ processed: z.number(), dead_before: z.string() });

/**
 * Moves up to `limit` of a subscription's oldest dead letters that died at or before
 * `deadBefore` (the database's now, when undefined) back to the queue.
 */
export function reprocessAllDlqMessages(db: DatabaseConnection, subscriptionId: string, deadBefore: string | undefined, limit: number) {
  return db.one(sql.type(DeadLetterBatchRow)`
    SELECT processed, dead_before::text FROM reprocess_all_dlq_messages(${subscriptionId}, ${deadBefore ?? null}::timestamptz, ${limit})
  `);
}

/** Deletes up to `limit` of a subscription's oldest dead letters that died at or before `deadBefore` (the database's now, when undefined). */
export function purgeAllDlqMessages(db: DatabaseConnection, subscriptionId: string, deadBefore: string | undefined, limit: number) {
  return db.one(sql.type(DeadLetterBatchRow)`
    SELECT processed, dead_before::text FROM purge_all_dlq_messages(${subscriptionId}, ${deadBefore ?? null}::timestamptz, ${limit})
  `);
}

const MetricsRow = z.object({ available: z.bigint(), delivered: z.bigint(), acked: z.bigint(), dlq: z.bigint() });

/** Counts a subscription's messages by state. */
export function getSubscriptionMetrics(db: DatabaseConnection, subscriptionId: string) {
  return db.one(sql.type(MetricsRow)`SELECT * FROM get_subscription_metrics(${subscriptionId})`);
}

/** Releases, as failed deliveries, up to `limit` deliveries whose lease has ended, across all subscriptions; returns how many. */
export function expireLeases(db: DatabaseConnection, limit: number) {
  return db.oneFirst(sql.type(z.object({ released: z.number() }))`
    SELECT expire_leases(${limit}) AS released
  `);
}

/** Releases, as failed deliveries, the messages locked longer than `lockTimeoutSeconds`, whatever their lease; returns how many. */
export function cleanupStuckMessages(db: DatabaseConnection, lockTimeoutSeconds: number) {
  return db.oneFirst(sql.type(z.object({ released: z.number() }))`
    SELECT cleanup_stuck_messages(${lockTimeoutSeconds}) AS released
  `);
}

/** Forgets acknowledgements older than `olderThanSeconds`; returns how many. */
export function cleanupAckedMessages(db: DatabaseConnection, olderThanSeconds: number) {
  return db.oneFirst(sql.type(z.object({ forgotten: z.bigint() }))`
    SELECT cleanup_acked_messages(${olderThanSeconds}) AS forgotten
  `);
}

/** Deletes up to `limit` de-duplication claims whose window has ended; returns how many. */
export function forgetExpiredDedupKeys(db: DatabaseConnection, limit: number) {
  return db.oneFirst(sql.type(z.object({ forgotten: z.number() }))`
    SELECT forget_expired_dedup_keys(${limit}) AS forgotten
  `);
}

/** Folds the count deltas. */
export async function compactCounts(db: DatabaseConnection) {
  await db.query(sql.unsafe`SELECT compact_counts()`);
}

const QueueStatsRow = z.object({
  subscription_id: z.string(),
  available: z.bigint(),
  delivered: z.bigint(),
  dlq: z.bigint(),
  oldest_available_age_seconds: z.number(),
  delayed: z.bigint(),
  // Counts by reason label, as JSON numbers: exact up to 2^53.
  dlq_by_reason: z.record(z.string(), z.number()),
});

/** Returns every subscription's counts, its dead letters by reason label, its delayed messages and the age of the message at the head of its queue. */
export function getQueueStats(db: DatabaseConnection) {
  return db.any(sql.type(QueueStatsRow)`SELECT * FROM queue_stats()`);
}

/** A batch delivered to a stream, and the stream consumer's live deliveries after it: counted, or an upper bound. */
export interface StreamBatch {
  rows: MessageRow[];
  outstanding: number;
  counted: boolean;
}

/**
 * Delivers up to `batchSize` ready messages to a stream's consumer, keeping its live
 * deliveries within `maxOutstanding`; they are counted unless `outstandingAtMost`, a bound
 * the caller knows, leaves room.
 */
export async function streamMessages(
  queue: QueueClient,
  subscriptionId: string,
  consumerId: string,
  limits: { maxOutstanding: number; batchSize: number; outstandingAtMost?: number },
): Promise<StreamBatch> {
  const { rows } = await queue.query<Omit<MessageRow, "id"> & { id: string | null; outstanding: number; counted: boolean }>({
    name: "stream_messages",
    text: `SELECT id, payload::text, delivery_attempts, floor(extract(epoch FROM created_at) * 1000)::float8 AS created_at_ms, outstanding, counted
           FROM stream_messages($1, $2, $3, $4, $5)`,
    values: [subscriptionId, consumerId, limits.maxOutstanding, limits.batchSize, limits.outstandingAtMost ?? null],
  });
  const { outstanding = 0, counted = true } = rows[0] ?? {};
  return {
    rows: rows.filter((row): row is MessageRow & { outstanding: number; counted: boolean } => row.id !== null),
    outstanding,
    counted,
  };
}

/** Returns those of the given subscriptions that have a message ready to be consumed, or that no longer exist. */
export async function readySubscriptions(queue: QueueClient, subscriptionIds: readonly string[]): Promise<string[]> {
  const { rows } = await queue.query<{ id: string }>({
    name: "ready_subscriptions",
    text: "SELECT id FROM ready_subscriptions($1::text[]) AS id",
    values: [subscriptionIds],
  });
  return rows.map((row) => row.id);
}

/** Sends a notification on `channel`, outside any transaction of the hot path. */
export async function notify(queue: QueueClient, channel: string, payload: string) {
  await queue.query({ name: "notify", text: "SELECT pg_notify($1, $2)", values: [channel, payload] });
}
