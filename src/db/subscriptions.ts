import { sql } from "slonik";
import { z } from "zod";
import type { DatabaseConnection } from "./pool.ts";

/** A JSON value as PostgreSQL's jsonb returns it. */
const Json: z.ZodType<unknown> = z.unknown();

/** A row of the subscriptions table. */
export const SubscriptionRow = z.object({
  id: z.string(),
  topic_id: z.string(),
  filter: Json,
  max_delivery_attempts: z.number(),
  backoff_min_seconds: z.number(),
  backoff_max_seconds: z.number(),
  ack_deadline_seconds: z.number(),
  ordering_key: z.string().nullable(),
  created_at: z.number(),
});
export type SubscriptionRow = z.infer<typeof SubscriptionRow>;

/** The settings of a new subscription. */
export interface NewSubscription {
  id: string;
  topicId: string;
  filter: unknown;
  maxDeliveryAttempts: number;
  backoffMinSeconds: number;
  backoffMaxSeconds: number;
  ackDeadlineSeconds: number;
  /** The payload key that orders delivery, if any. */
  orderingKey?: string;
}

/** Inserts a subscription; FP409 when the id is taken, FP404 when the topic is missing. */
export function createSubscription(db: DatabaseConnection, subscription: NewSubscription) {
  const filter = subscription.filter === null ? null : sql.jsonb(subscription.filter as Parameters<typeof sql.jsonb>[0]);
  return db.one(sql.type(SubscriptionRow)`
    SELECT * FROM create_subscription(
      ${subscription.id},
      ${subscription.topicId},
      ${filter},
      ${subscription.maxDeliveryAttempts},
      ${subscription.backoffMinSeconds},
      ${subscription.backoffMaxSeconds},
      ${subscription.ackDeadlineSeconds},
      ${subscription.orderingKey ?? null}
    )
  `);
}

/** Returns one subscription; FP404 when there is none. */
export function getSubscription(db: DatabaseConnection, id: string) {
  return db.one(sql.type(SubscriptionRow)`SELECT * FROM get_subscription(${id})`);
}

/** Returns a page of subscriptions ordered by id. */
export function listSubscriptions(db: DatabaseConnection, offset: number, limit: number) {
  return db.any(sql.type(SubscriptionRow)`SELECT * FROM list_subscriptions(${offset}, ${limit})`);
}

/** Delivery settings to change; an undefined one keeps its value. */
export interface SubscriptionChanges {
  maxDeliveryAttempts?: number;
  backoffMinSeconds?: number;
  backoffMaxSeconds?: number;
  ackDeadlineSeconds?: number;
}

/** Changes a subscription's delivery settings and returns it; FP404 when there is none, FP422 when backoff min would exceed max. */
export function updateSubscription(db: DatabaseConnection, id: string, changes: SubscriptionChanges) {
  return db.one(sql.type(SubscriptionRow)`
    SELECT * FROM update_subscription(
      ${id},
      ${changes.maxDeliveryAttempts ?? null},
      ${changes.backoffMinSeconds ?? null},
      ${changes.backoffMaxSeconds ?? null},
      ${changes.ackDeadlineSeconds ?? null}
    )
  `);
}

/** Deletes a subscription and its messages; FP404 when there is none. */
export async function deleteSubscription(db: DatabaseConnection, id: string) {
  await db.query(sql.unsafe`SELECT delete_subscription(${id})`);
}
