import type { Api } from "./protocols.ts";

/** A subscription's four counts. */
export async function metrics(api: Api, subscriptionId: string) {
  const { available, delivered, acked, dlq } = await api.subscriptions.getSubscriptionMetrics({ subscriptionId });
  return { available, delivered, acked, dlq };
}

/** Consumes up to `batchSize` messages of a subscription as `consumerId`. */
export async function consume(api: Api, subscriptionId: string, batchSize = 100, consumerId = "worker-1") {
  return (await api.subscriptions.consumeMessages({ subscriptionId, consumerId, batchSize })).data;
}
