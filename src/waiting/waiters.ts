/** Why a wait ended. */
export type WaitEnd = "woken" | "timeout" | "aborted" | "closed";

/** What a waiter waits for: a long-poll for messages; a stream for messages, or for room when it is at its limit. */
export type WaiterKind = "long-poll" | "stream";

/**
 * A waiter, armed before its caller looks for messages, so that a wake-up that
 * comes while it looks is not missed: `wait` then returns at once.
 */
export interface Waiter {
  readonly subscriptionId: string;
  readonly kind: WaiterKind;
  /** Whether the waiter waits for acks (a stream at its outstanding limit) rather than for messages. */
  full: boolean;
  /** Waits until woken, `timeoutMs` passed, `signal` aborted or the registry closed. */
  wait(timeoutMs: number, signal: AbortSignal): Promise<WaitEnd>;
  /** Leaves the registry; call it once done. */
  disarm(): void;
}

interface Entry extends Waiter {
  woken: boolean;
  resolve?: (end: WaitEnd) => void;
}

/**
 * The waiters of one server process, by subscription and by topic. Waking a
 * subscription wakes its oldest waiter only (one consume at a time, not a
 * herd); a waiter that then finds messages passes the wake-up on with
 * `wakeSubscription`, so a burst reaches as many waiters as it feeds.
 */
export function createWaiters() {
  const bySubscription = new Map<string, Set<Entry>>();
  const subscriptionsByTopic = new Map<string, Set<string>>();
  const topicOfSubscription = new Map<string, string>();
  let closed = false;

  const wake = (entry: Entry, end: WaitEnd = "woken") => {
    entry.woken = true;
    entry.resolve?.(end);
    entry.resolve = undefined;
  };

  function leave(entry: Entry) {
    const entries = bySubscription.get(entry.subscriptionId);
    if (!entries?.delete(entry) || entries.size > 0) return;
    bySubscription.delete(entry.subscriptionId);
    const topicId = topicOfSubscription.get(entry.subscriptionId);
    topicOfSubscription.delete(entry.subscriptionId);
    if (topicId === undefined) return;
    const subscriptions = subscriptionsByTopic.get(topicId);
    subscriptions?.delete(entry.subscriptionId);
    if (subscriptions?.size === 0) subscriptionsByTopic.delete(topicId);
  }

  return {
    /** Arms a waiter on a subscription of a topic. */
    arm(subscriptionId: string, topicId: string, kind: WaiterKind): Waiter {
      const entry: Entry = {
        subscriptionId,
        kind,
        full: false,
        woken: closed,
        wait(timeoutMs, signal) {
          if (closed) return Promise.resolve("closed");
          if (entry.woken) {
            entry.woken = false;
            return Promise.resolve("woken");
          }
          if (signal.aborted) return Promise.resolve("aborted");
          return new Promise<WaitEnd>((resolve) => {
            const timer = setTimeout(() => settle("timeout"), timeoutMs);
            const aborted = () => settle("aborted");
            const settle = (end: WaitEnd) => {
              clearTimeout(timer);
              signal.removeEventListener("abort", aborted);
              entry.resolve = undefined;
              entry.woken = false;
              resolve(closed ? "closed" : end);
            };
            signal.addEventListener("abort", aborted, { once: true });
            entry.resolve = settle;
          });
        },
        disarm() {
          leave(entry);
        },
      };
      if (closed) return entry;
      let entries = bySubscription.get(subscriptionId);
      if (!entries) {
        entries = new Set();
        bySubscription.set(subscriptionId, entries);
        topicOfSubscription.set(subscriptionId, topicId);
        const subscriptions = subscriptionsByTopic.get(topicId) ?? new Set();
        subscriptionsByTopic.set(topicId, subscriptions.add(subscriptionId));
      }
      entries.add(entry);
      return entry;
    },

    /** Wakes one waiter for messages of a subscription: the oldest that waits, else the oldest busy one with no wake-up pending. */
    wakeSubscription(subscriptionId: string) {
      const entries = [...(bySubscription.get(subscriptionId) ?? [])].filter((entry) => !entry.full);
      const target = entries.find((entry) => entry.resolve !== undefined) ?? entries.find((entry) => !entry.woken);
      if (target) wake(target);
    },

    /** Wakes, on each subscription of a topic, its oldest waiter for messages. */
    wakeTopic(topicId: string) {
      for (const subscriptionId of subscriptionsByTopic.get(topicId) ?? []) this.wakeSubscription(subscriptionId);
    },

    /** Wakes the streams of a subscription that wait for room (after acks, nacks or expired leases). */
    wakeFull(subscriptionId?: string) {
      const lists = subscriptionId === undefined ? bySubscription.values() : [bySubscription.get(subscriptionId) ?? []];
      for (const entries of lists) for (const entry of entries) if (entry.full) wake(entry);
    },

    /** Wakes every waiter of a subscription (it was deleted: each learns it from its next statement). */
    wakeAll(subscriptionId: string) {
      for (const entry of bySubscription.get(subscriptionId) ?? []) wake(entry);
    },

    /** The subscriptions that have waiters for messages. */
    waitingSubscriptions(): string[] {
      return [...bySubscription].filter(([, entries]) => [...entries].some((entry) => !entry.full)).map(([id]) => id);
    },

    /** How many waiters of each kind are armed. */
    counts(): Record<WaiterKind, number> {
      const counts = { "long-poll": 0, stream: 0 };
      for (const entries of bySubscription.values()) for (const entry of entries) counts[entry.kind]++;
      return counts;
    },

    /** Ends every wait, now and to come, with "closed". */
    close() {
      closed = true;
      for (const entries of bySubscription.values()) for (const entry of entries) wake(entry, "closed");
    },
  };
}

/** The waiters of one server process. */
export type Waiters = ReturnType<typeof createWaiters>;
