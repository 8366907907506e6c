import type { JsonObject } from "@bufbuild/protobuf";

/** A subscription of a benchmark scenario. */
export interface BenchSubscription {
  id: string;
  filter: JsonObject | null;
  /** The payload key that orders the subscription's delivery, if any. */
  orderingKey?: string;
}

/** A scenario's topic settings beyond the seed's. */
export interface BenchTopic {
  /** The payload key that de-duplicates publishing, if any. */
  dedupKey?: string;
}

/** Publishes batches of messages to the scenario's topic, over one connection. */
export interface Publisher {
  publish(messages: JsonObject[]): Promise<void>;
  close(): Promise<void>;
}

/** Consumes and acknowledges the messages of one subscription, over one connection. */
export interface Consumer {
  /** Locks up to `batchSize` messages and returns their ids and payloads. */
  consume(batchSize: number): Promise<{ id: string; payload?: unknown }[]>;
  ack(ids: string[]): Promise<void>;
  close(): Promise<void>;
}

/** One way of doing the scenario's durable work: raw SQL, REST or gRPC. */
export interface Driver {
  name: string;
  /** Creates the topic and subscriptions, empty; the raw-SQL baseline has no ordering or de-duplication. */
  setup(topic: string, subscriptions: BenchSubscription[], settings?: BenchTopic): Promise<void>;
  publisher(): Promise<Publisher>;
  consumer(subscriptionId: string): Promise<Consumer>;
  /** Removes what setup created, with every message left. */
  close(): Promise<void>;
}
