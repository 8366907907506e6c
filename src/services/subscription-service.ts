import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { SubscriptionSchema, type SubscriptionService } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import type { Config } from "../config/config.ts";
import type { DatabasePool } from "../db/pool.ts";
import * as subscriptions from "../db/subscriptions.ts";
import { pageOf } from "./page.ts";

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
  });
}

type Defaults = Pick<Config, "subscriptionMaxAttempts" | "subscriptionBackoffMinSeconds" | "subscriptionBackoffMaxSeconds">;

/** Implements SubscriptionService over the database; unset delivery settings take the configured defaults. */
export function createSubscriptionService(db: DatabasePool, defaults: Defaults): Partial<ServiceImpl<typeof SubscriptionService>> {
  return {
    async createSubscription(request) {
      const backoffMinSeconds = request.backoffMinSeconds ?? defaults.subscriptionBackoffMinSeconds;
      const backoffMaxSeconds = request.backoffMaxSeconds ?? defaults.subscriptionBackoffMaxSeconds;
      if (backoffMinSeconds > backoffMaxSeconds) {
        throw new ConnectError(
          `backoff_min_seconds (${backoffMinSeconds}) must not be greater than backoff_max_seconds (${backoffMaxSeconds})`,
          Code.InvalidArgument,
        );
      }
      const row = await subscriptions.createSubscription(db, {
        id: request.id,
        topicId: request.topicId,
        filter: request.filter ? toJson(ValueSchema, request.filter) : null,
        maxDeliveryAttempts: request.maxDeliveryAttempts ?? defaults.subscriptionMaxAttempts,
        backoffMinSeconds,
        backoffMaxSeconds,
      });
      return subscriptionFromRow(row);
    },
    async getSubscription(request) {
      return subscriptionFromRow(await subscriptions.getSubscription(db, request.id));
    },
    async listSubscriptions(request) {
      const { offset, limit } = pageOf(request);
      return { data: (await subscriptions.listSubscriptions(db, offset, limit)).map(subscriptionFromRow) };
    },
    async deleteSubscription(request) {
      await subscriptions.deleteSubscription(db, request.id);
      return {};
    },
  };
}
