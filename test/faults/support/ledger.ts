/** The payload of every message the fault workload publishes: which batch, which try of it, and the message's sequence number. */
export interface Stamp {
  seq: number;
  batch: number;
  try: number;
}

/** One delivery the consumers saw: the message, and when the consume call that brought it was sent and answered. */
export interface Delivery extends Stamp {
  id: string;
  sentAt: number;
  receivedAt: number;
}

/** How a failed call failed: answered `unavailable` (REST 503), cut off on the wire, or answered with another code. */
export type Failure = "unavailable" | "connection" | `other: ${string}`;

/** What the accounting found; every count but `confirmed` and `redelivered` names something that must not happen, or may only be counted. */
export interface Accounting {
  /** Messages whose publish was confirmed. */
  confirmed: number;
  /** Confirmed messages never delivered. */
  lost: number;
  /** Deliveries of a message asked for after an ack of it was confirmed while live. */
  ackedTwice: number;
  /** Messages (ids) delivered more than once. */
  redelivered: number;
  /** Pairs of deliveries of one message less than a lease apart: two consumers holding it at once. */
  overlapping: number;
  /** Delivered messages of a publish whose call failed (the retry published them again): allowed, counted. */
  duplicatesFromUnconfirmed: number;
  /** Messages of one publish call stored more than once (one (seq, try), several ids). */
  appliedTwice: number;
  /** Publish calls of which some messages were delivered and others never. */
  partial: number;
  /** Calls answered `unavailable`, calls cut off on the wire, and other failures (by description). */
  unavailable: number;
  connectionErrors: number;
  otherErrors: Record<string, number>;
}

/** One call of the workload: what it was, when it was sent and ended, and how it failed, if it did. */
export interface Call {
  method: string;
  sentAt: number;
  endedAt: number;
  failure?: Failure;
}

interface PublishCall {
  stamps: Stamp[];
  confirmed: boolean;
}

/**
 * The record of a fault scenario's traffic, from which it accounts for every
 * message. Times are performance.now() of the test process; a delivery's
 * lease runs for `leaseMs` from some moment between its consume call's
 * sending and its answer, which bounds what the client can conclude.
 */
export class Ledger {
  readonly publishes: PublishCall[] = [];
  readonly deliveries: Delivery[] = [];
  /** Per message id: the earliest confirmation of an ack that came while its delivery was live. */
  readonly acked = new Map<string, number>();
  readonly calls: Call[] = [];
  private readonly leaseMs: number;

  constructor(leaseMs: number) {
    this.leaseMs = leaseMs;
  }

  /** Notes a publish call of `stamps` that was confirmed, or failed (and may or may not have committed). */
  published(stamps: Stamp[], confirmed: boolean) {
    this.publishes.push({ stamps, confirmed });
  }

  /** Notes the deliveries of one consume call. */
  delivered(deliveries: Delivery[]) {
    this.deliveries.push(...deliveries);
  }

  /**
   * Notes a confirmed ack of `delivery` at `confirmedAt`. It counts as an ack
   * only if it surely reached the server within the delivery's lease: the
   * ack was processed before `confirmedAt` and the lease began after the
   * consume call was sent.
   */
  ackConfirmed(delivery: Delivery, confirmedAt: number) {
    if (confirmedAt - delivery.sentAt >= this.leaseMs) return;
    const earlier = this.acked.get(delivery.id);
    if (earlier === undefined || confirmedAt < earlier) this.acked.set(delivery.id, confirmedAt);
  }

  /** Notes a call that has just ended, and how it failed if it did. */
  called(method: string, sentAt: number, failure?: Failure) {
    this.calls.push({ method, sentAt, endedAt: performance.now(), failure });
  }

  /** The calls that failed. */
  failures() {
    return this.calls.filter((call): call is Call & { failure: Failure } => call.failure !== undefined);
  }

  /** Whether every confirmed message has been delivered. */
  everyConfirmedDelivered(): boolean {
    const delivered = new Set(this.deliveries.map(stampKey));
    return this.publishes.every((call) => !call.confirmed || call.stamps.every((stamp) => delivered.has(stampKey(stamp))));
  }

  /** Accounts for every message published so far. */
  account(): Accounting {
    const byStamp = new Map<string, Set<string>>();
    const byId = new Map<string, Delivery[]>();
    for (const delivery of this.deliveries) {
      const ids = byStamp.get(stampKey(delivery)) ?? new Set<string>();
      byStamp.set(stampKey(delivery), ids.add(delivery.id));
      byId.set(delivery.id, [...(byId.get(delivery.id) ?? []), delivery]);
    }
    const confirmed = this.publishes.filter((call) => call.confirmed);
    const unconfirmed = this.publishes.filter((call) => !call.confirmed);
    const deliveredOf = (call: PublishCall) => call.stamps.filter((stamp) => byStamp.has(stampKey(stamp))).length;
    let ackedTwice = 0;
    let overlapping = 0;
    for (const [id, deliveries] of byId) {
      const ackedAt = this.acked.get(id);
      ackedTwice += deliveries.filter((delivery) => ackedAt !== undefined && delivery.sentAt > ackedAt).length;
      for (const [n, first] of deliveries.entries()) {
        for (const second of deliveries.slice(n + 1)) {
          if (Math.max(first.receivedAt, second.receivedAt) - Math.min(first.sentAt, second.sentAt) < this.leaseMs) overlapping++;
        }
      }
    }
    const otherErrors: Record<string, number> = {};
    const failures = this.failures();
    for (const { method, failure } of failures) {
      if (failure.startsWith("other")) otherErrors[`${method} ${failure}`] = (otherErrors[`${method} ${failure}`] ?? 0) + 1;
    }
    return {
      confirmed: confirmed.reduce((sum, call) => sum + call.stamps.length, 0),
      lost: confirmed.reduce((sum, call) => sum + call.stamps.length - deliveredOf(call), 0),
      ackedTwice,
      redelivered: [...byId.values()].filter((deliveries) => deliveries.length > 1).length,
      overlapping,
      duplicatesFromUnconfirmed: unconfirmed.reduce((sum, call) => sum + deliveredOf(call), 0),
      appliedTwice: [...byStamp.values()].filter((ids) => ids.size > 1).length,
      partial: this.publishes.filter((call) => deliveredOf(call) > 0 && deliveredOf(call) < call.stamps.length).length,
      unavailable: failures.filter(({ failure }) => failure === "unavailable").length,
      connectionErrors: failures.filter(({ failure }) => failure === "connection").length,
      otherErrors,
    };
  }
}

function stampKey(stamp: Stamp) {
  return `${stamp.seq}:${stamp.try}`;
}
