import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { createFastPubSubClient, type FastPubSubClient, type Protocol } from "../../../src/client.ts";
import { type Accounting, type Delivery, type Failure, Ledger, type Stamp } from "./ledger.ts";

/** What a fault scenario's clients do. */
export interface WorkloadOptions {
  url: string;
  /** The protocols of the publishers and consumers, handed out in turn. */
  protocols: Protocol[];
  publishers: number;
  consumers: number;
  /** Messages per publish call. */
  batchSize: number;
  /** A publisher's pause after each confirmed batch, which sets the rate. */
  publishPauseMs: number;
  /** How long a consumer works on a batch before it acks it. */
  holdMs: number;
  /** The subscription's ack_deadline_seconds, in ms (whole seconds): how long a delivery stays live. */
  leaseMs: number;
  /** An access token, for servers with authentication on. */
  token?: string;
}

/** A fault injected into a running workload, from the moment it began to the moment the workload succeeded again. */
export interface Fault {
  /** Marks the moment the cause of the fault was removed (e.g. PostgreSQL accepts connections again). */
  back(): void;
  /** Waits for the first publish confirmed after `back()`, and returns how long that took and what the clients saw since the fault began. */
  recovered(timeoutMs?: number): Promise<{ recoveryMs: number; unavailable: number }>;
}

const retryPauseMs = 50;
// No call should take this long, whatever the fault: one that does is reported, not waited for.
const callOptions = { timeoutMs: 15_000 };

/** How a call failed, told from the error the client threw: an answer carries the server's headers. */
export function failureOf(error: unknown): Failure {
  const connectError = ConnectError.from(error);
  if (connectError.code === Code.DeadlineExceeded) return `other: no answer within ${callOptions.timeoutMs} ms`;
  if (!connectError.metadata.has("content-type")) return "connection";
  if (connectError.code === Code.Unavailable) return "unavailable";
  return `other: ${Code[connectError.code]} ${connectError.rawMessage}`;
}

/**
 * Publishers and consumers of one topic and subscription through the real
 * client. A publisher sends each batch until one try of it is confirmed (each
 * try stamped with its number); a consumer acks what it received after
 * `holdMs`, retrying a failed ack while the delivery may still be live. Every
 * call goes into the ledger.
 */
export function createWorkload(options: WorkloadOptions) {
  const ledger = new Ledger(options.leaseMs);
  const topicId = `faults-${Math.random().toString(36).slice(2, 8)}`;
  const subscriptionId = `${topicId}-sub`;
  const token = options.token;
  const clients = options.protocols.map((protocol) => createFastPubSubClient(options.url, { protocol, token }));
  const client = (n: number) => clients[n % clients.length] as FastPubSubClient;
  const confirmations: number[] = [];
  const waiters: (() => void)[] = [];
  const faults: { downAt: number; backAt?: number; recoveredAt?: number; unavailable?: number }[] = [];
  // Deliveries received and not yet acked or given up, by id.
  const held = new Map<string, Delivery>();
  let nextBatch = 0;
  let publishStopped = false;
  let stopped = false;
  let publishing: Promise<unknown> = Promise.resolve();
  let consuming: Promise<unknown> = Promise.resolve();

  // What the subscription held at the end of the drain: available, delivered and dead-lettered messages.
  let left: number | undefined;
  const messagesLeft = async () => {
    const counts = await client(0)
      .subscriptions.getSubscriptionMetrics({ subscriptionId }, callOptions)
      .catch(() => undefined);
    return counts && counts.available + counts.delivered + counts.dlq;
  };

  const confirmedPublish = () => {
    confirmations.push(performance.now());
    for (const wake of waiters.splice(0)) wake();
  };

  const publisher = async (api: FastPubSubClient) => {
    while (!stopped && !publishStopped) {
      const batch = nextBatch++;
      const seqs = Array.from({ length: options.batchSize }, (_, n) => batch * options.batchSize + n);
      for (let attempt = 1; !stopped; attempt++) {
        const stamps: Stamp[] = seqs.map((seq) => ({ seq, batch, try: attempt }));
        const sentAt = performance.now();
        try {
          await api.topics.publishMessages({ topicId, messages: stamps.map((stamp) => ({ ...stamp })) }, callOptions);
          ledger.called("publish", sentAt);
          ledger.published(stamps, true);
          confirmedPublish();
          break;
        } catch (error) {
          ledger.called("publish", sentAt, failureOf(error));
          ledger.published(stamps, false);
          await sleep(retryPauseMs);
        }
      }
      await sleep(options.publishPauseMs);
    }
  };

  const consumer = async (api: FastPubSubClient, consumerId: string) => {
    while (!stopped) {
      const sentAt = performance.now();
      let deliveries: Delivery[];
      try {
        const { data } = await api.subscriptions.consumeMessages({ subscriptionId, consumerId, batchSize: 50 }, callOptions);
        const receivedAt = performance.now();
        ledger.called("consume", sentAt);
        deliveries = data.map((message) => ({ ...(message.payload as unknown as Stamp), id: message.id, sentAt, receivedAt }));
      } catch (error) {
        ledger.called("consume", sentAt, failureOf(error));
        await sleep(retryPauseMs);
        continue;
      }
      if (deliveries.length === 0) {
        await sleep(20);
        continue;
      }
      ledger.delivered(deliveries);
      for (const delivery of deliveries) held.set(delivery.id, delivery);
      await sleep(options.holdMs);
      // A failed ack is retried while the deliveries may be live; after that they come back anyway.
      while (!stopped) {
        const ackSentAt = performance.now();
        try {
          await api.subscriptions.ackMessages({ subscriptionId, messageIds: deliveries.map((delivery) => delivery.id) }, callOptions);
          const confirmedAt = performance.now();
          ledger.called("ack", ackSentAt);
          for (const delivery of deliveries) ledger.ackConfirmed(delivery, confirmedAt);
          break;
        } catch (error) {
          ledger.called("ack", ackSentAt, failureOf(error));
          if (performance.now() - sentAt > options.leaseMs) break;
          await sleep(retryPauseMs);
        }
      }
      for (const delivery of deliveries) held.delete(delivery.id);
    }
  };

  /** Resolves with the time of the first publish confirmed after `since`. */
  const confirmedAfter = async (since: number, timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const at = confirmations.find((time) => time > since);
      if (at !== undefined) return at;
      if (performance.now() > deadline) throw new Error(`no publish was confirmed within ${timeoutMs} ms of the fault's end`);
      await Promise.race([new Promise<void>((wake) => waiters.push(wake)), sleep(100)]);
    }
  };

  return {
    ledger,
    subscriptionId,

    /** Creates the topic and subscription (leases of leaseMs; expiries redeliver after 1 s, never to the dead-letter queue) and starts the loops. */
    async start() {
      await client(0).topics.createTopic({ id: topicId });
      await client(0).subscriptions.createSubscription({
        id: subscriptionId,
        topicId,
        maxDeliveryAttempts: 1000,
        backoffMinSeconds: 1,
        backoffMaxSeconds: 1,
        ackDeadlineSeconds: options.leaseMs / 1000,
      });
      publishing = Promise.all(Array.from({ length: options.publishers }, (_, n) => publisher(client(n))));
      consuming = Promise.all(Array.from({ length: options.consumers }, (_, n) => consumer(client(n + 1), `consumer-${n}`)));
    },

    /** The deliveries the consumers hold now: received, and neither acked nor given up. */
    held: () => [...held.values()],

    /** The number of messages confirmed so far. */
    confirmed: () => ledger.publishes.reduce((sum, call) => sum + (call.confirmed ? call.stamps.length : 0), 0),

    /** Waits until `count` messages are confirmed. */
    async confirmedAtLeast(count: number, timeoutMs = 30_000) {
      const deadline = performance.now() + timeoutMs;
      while (this.confirmed() < count) {
        if (performance.now() > deadline) throw new Error(`only ${this.confirmed()} of ${count} messages confirmed in ${timeoutMs} ms`);
        await Promise.race([new Promise<void>((wake) => waiters.push(wake)), sleep(100)]);
      }
    },

    /** Notes that a fault begins now. */
    fault(): Fault {
      const fault: (typeof faults)[number] = { downAt: performance.now() };
      faults.push(fault);
      return {
        back() {
          fault.backAt = performance.now();
        },
        async recovered(timeoutMs = 30_000) {
          const backAt = fault.backAt ?? performance.now();
          fault.recoveredAt = await confirmedAfter(backAt, timeoutMs);
          fault.unavailable = ledger
            .failures()
            .filter(
              ({ endedAt, failure }) => failure === "unavailable" && endedAt >= fault.downAt && endedAt <= (fault.recoveredAt as number),
            ).length;
          return { recoveryMs: fault.recoveredAt - backAt, unavailable: fault.unavailable };
        },
      };
    },

    /** Stops the publishers once each has its batch in hand confirmed. */
    async stopPublishing() {
      publishStopped = true;
      await publishing;
    },

    /**
     * Stops the publishers, then consumes until every confirmed message has
     * been delivered and the subscription holds nothing (the duplicates of
     * failed publishes included), or `timeoutMs` passes; then stops the
     * consumers. An ack whose answer was lost may have been applied, so what
     * counts in the end is what the subscription still holds.
     */
    async drain(timeoutMs = 30_000) {
      await this.stopPublishing();
      const deadline = performance.now() + timeoutMs;
      while (performance.now() < deadline) {
        if (ledger.everyConfirmedDelivered()) {
          left = await messagesLeft();
          if (left === 0) break;
        }
        await sleep(200);
      }
      await this.stop();
      left = await messagesLeft();
    },

    /** Stops every loop and waits for them. */
    async stop() {
      stopped = true;
      await Promise.all([publishing, consuming]);
    },

    /** The accounting, with what the subscription held after the drain, the slowest recovery and the unavailable answers seen during the faults. */
    summary(): Accounting & { left?: number; recoveryMs?: number; unavailableWhileDown: number } {
      const recoveries = faults.flatMap((fault) => (fault.recoveredAt && fault.backAt ? [fault.recoveredAt - fault.backAt] : []));
      return {
        ...ledger.account(),
        left,
        recoveryMs: recoveries.length > 0 ? Math.max(...recoveries) : undefined,
        unavailableWhileDown: faults.reduce((sum, fault) => sum + (fault.unavailable ?? 0), 0),
      };
    },
  };
}

/** A fault workload. */
export type Workload = ReturnType<typeof createWorkload>;
