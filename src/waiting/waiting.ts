import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { LRUCache } from "lru-cache";
import type { Database } from "../db/database.ts";
import { notify, readySubscriptions } from "../db/messages.ts";
import type { Notifications } from "../db/notifications.ts";
import { getSubscription } from "../db/subscriptions.ts";
import type { Logger } from "../logger.ts";
import { createWaiters, type Waiter, type WaiterKind } from "./waiters.ts";

const channel = "fastpubsub_messages";

/** How the server wakes consumers that wait. */
export interface WaitingSettings {
  /** The most streams open at once in this process; one more is refused with resource_exhausted. */
  maxStreams: number;
  /** How often waiting consumers are checked against the database for what no wake-up announced (ms). */
  fallbackMs?: number;
  /** The same while notifications cannot be heard (ms). */
  pollingMs?: number;
  /** How long a topic's NOTIFY is held back after one was sent, so that a burst of publishes sends two, not one each (ms). */
  coalesceMs?: number;
}

// A delayed publish wakes its topic's waiters when its messages are due, rounded up to this step:
// publishes due within one step share a timer.
const dueStepMs = 100;
// The most such timers a process keeps, and the longest delay one covers; the fallback check finds the rest.
const maxDueTimers = 10_000;
const maxDueDelayMs = 2_000_000_000;

/**
 * Waiting consumers of one server process (long-polls and streams), and what
 * wakes them: a publish through this process wakes its topic's waiters at
 * once (a delayed one, when its messages are due); other processes hear it
 * through a NOTIFY on channel fastpubsub_messages, at most one per topic per
 * short window (a delayed publish's carries its due time), sent after the
 * publish committed and outside its transaction (NOTIFY serialises the commits
 * of the transactions that send one); and a fallback check, one statement for
 * all waiting subscriptions, finds what a lost notification missed, and
 * messages whose backoff ended (every second, or every quarter second while
 * notifications cannot be heard). On an ordered subscription, an ack or a nack
 * may let the next message of its ordering value go, so it wakes a waiter too.
 */
export function createWaiting(options: { db: Database; notifications: Notifications; logger: Logger; settings: WaitingSettings }) {
  const { db, notifications, settings } = options;
  const fallbackMs = settings.fallbackMs ?? 1_000;
  const pollingMs = settings.pollingMs ?? 250;
  const coalesceMs = settings.coalesceMs ?? 10;
  const waiters = createWaiters();
  const instance = randomUUID();
  // A subscription's topic and ordering never change; a deleted one is found by the consumer's next statement.
  const subscriptions = new LRUCache<string, { topicId: string; ordered: boolean }>({ max: 10_000, ttl: 60_000 });
  // Timers that wake a topic's waiters when delayed messages are due, by topic and due step.
  const dueTimers = new Map<string, NodeJS.Timeout>();
  // Topics whose NOTIFY went out within the window: "again" when another publish came meanwhile.
  const recentNotifies = new Map<string, "sent" | "again">();
  let closed = false;

  notifications.subscribe(channel, {
    notified(payload) {
      const [from, topicId, dueMs] = payload.split(" ");
      if (from === instance || !topicId) return;
      if (dueMs === undefined) waiters.wakeTopic(topicId);
      else wakeWhenDue(topicId, Number(dueMs));
    },
    // Anything published while nobody listened is found by a check now.
    listening: () => void check(),
  });

  const sendNotify = (topicId: string) => {
    notify(db.queue, channel, `${instance} ${topicId}`).catch((error: unknown) =>
      options.logger.debug("could not notify other servers of a publish", { error: String(error) }),
    );
    const timer = setTimeout(() => {
      if (recentNotifies.get(topicId) === "again") {
        recentNotifies.set(topicId, "sent");
        sendNotify(topicId);
      } else {
        recentNotifies.delete(topicId);
      }
    }, coalesceMs);
    timer.unref();
  };

  /** Wakes a topic's waiters once `dueMs` (ms since the epoch) has passed; false when a timer for that step was already set, or none can be. */
  function wakeWhenDue(topicId: string, dueMs: number): boolean {
    const step = Math.ceil(dueMs / dueStepMs) * dueStepMs;
    const key = `${topicId} ${step}`;
    const delayMs = step - Date.now();
    if (closed || dueTimers.has(key) || dueTimers.size >= maxDueTimers || !(delayMs <= maxDueDelayMs)) return false;
    const timer = setTimeout(() => {
      dueTimers.delete(key);
      waiters.wakeTopic(topicId);
    }, delayMs);
    timer.unref();
    dueTimers.set(key, timer);
    return true;
  }

  let checking = false;
  async function check() {
    if (checking || closed) return;
    checking = true;
    try {
      waiters.wakeFull();
      const waiting = waiters.waitingSubscriptions();
      if (waiting.length === 0) return;
      for (const subscriptionId of await readySubscriptions(db.queue, waiting)) waiters.wakeSubscription(subscriptionId);
    } catch (error) {
      options.logger.debug("the check of waiting consumers failed", { error: String(error) });
    } finally {
      checking = false;
    }
  }
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    timer = setTimeout(
      () => {
        void check().finally(() => closed || schedule());
      },
      notifications.listening ? fallbackMs : pollingMs,
    );
    timer.unref();
  };
  schedule();

  return {
    /**
     * Arms a waiter of a kind on a subscription, before its caller looks for
     * messages; throws not_found for a missing subscription, and
     * resource_exhausted for a stream beyond the limit. Disarm it once done.
     */
    async arm(subscriptionId: string, kind: WaiterKind): Promise<Waiter> {
      let subscription = subscriptions.get(subscriptionId);
      if (subscription === undefined) {
        const row = await getSubscription(db.pool, subscriptionId);
        subscription = { topicId: row.topic_id, ordered: row.ordering_key !== null };
        subscriptions.set(subscriptionId, subscription);
      }
      // A stream keeps one waiter armed for as long as it is open.
      if (kind === "stream" && waiters.counts().stream >= settings.maxStreams) {
        throw new ConnectError(
          `this server has ${settings.maxStreams} streams open, its limit (FASTPUBSUB_API_MAX_STREAMS); retry later or on another server`,
          Code.ResourceExhausted,
        );
      }
      return waiters.arm(subscriptionId, subscription.topicId, kind);
    },

    /**
     * Tells waiters that a topic has new messages: this process's at once, other processes' through a
     * coalesced NOTIFY; messages due at `dueMs` (ms since the epoch) wake them then.
     */
    published(topicId: string, dueMs?: number) {
      if (dueMs !== undefined && dueMs > Date.now()) {
        // One NOTIFY per topic and due step: the other processes set their own timers.
        if (wakeWhenDue(topicId, dueMs)) {
          notify(db.queue, channel, `${instance} ${topicId} ${dueMs}`).catch((error: unknown) =>
            options.logger.debug("could not notify other servers of a delayed publish", { error: String(error) }),
          );
        }
        return;
      }
      waiters.wakeTopic(topicId);
      if (closed) return;
      if (recentNotifies.has(topicId)) {
        recentNotifies.set(topicId, "again");
        return;
      }
      recentNotifies.set(topicId, "sent");
      sendNotify(topicId);
    },

    /**
     * Tells waiters that deliveries of a subscription ended (acked, nacked,
     * released): streams at their limit have room; `ready` when the messages are
     * available again at once. On an ordered subscription the next message of an
     * ordering value may be ready whatever `ready` says.
     */
    released(subscriptionId: string, ready: boolean) {
      waiters.wakeFull(subscriptionId);
      if (ready || subscriptions.get(subscriptionId, { allowStale: true })?.ordered) waiters.wakeSubscription(subscriptionId);
    },

    /** Tells waiters that their subscription was deleted. */
    deleted(subscriptionId: string) {
      waiters.wakeAll(subscriptionId);
    },

    /** Passes a wake-up on to another waiter of the subscription: a consumer that found a full batch calls it, as more may be ready. */
    passOn(subscriptionId: string) {
      waiters.wakeSubscription(subscriptionId);
    },

    /** Whether the server is shutting down: waits end at once. */
    get closed() {
      return closed;
    },

    /** How many long-polls and streams are waiting or open. */
    counts: waiters.counts,

    /** Ends every wait: long-polls answer what they have, streams end with unavailable. */
    close() {
      closed = true;
      clearTimeout(timer);
      for (const dueTimer of dueTimers.values()) clearTimeout(dueTimer);
      dueTimers.clear();
      waiters.close();
    },
  };
}

/** The waiting consumers of one server process. */
export type Waiting = ReturnType<typeof createWaiting>;
