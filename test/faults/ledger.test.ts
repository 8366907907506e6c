import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { type Delivery, Ledger, type Stamp } from "./support/ledger.ts";
import { failureOf } from "./support/workload.ts";

const leaseMs = 1_000;
const stamps = (batch: number, attempt: number): Stamp[] => [0, 1].map((n) => ({ seq: batch * 2 + n, batch, try: attempt }));
const delivery = (stamp: Stamp, id: string, sentAt: number, receivedAt = sentAt + 5): Delivery => ({ ...stamp, id, sentAt, receivedAt });

describe("the fault accounting", () => {
  it("counts a confirmed message never delivered as lost, and a failed publish's delivered messages as duplicates, not lost", () => {
    const ledger = new Ledger(leaseMs);
    const [first, second] = stamps(0, 1);
    const [retried] = stamps(0, 2);
    ledger.published(stamps(0, 1), false);
    ledger.published(stamps(0, 2), true);
    ledger.delivered([delivery(first as Stamp, "a", 0), delivery(second as Stamp, "b", 0), delivery(retried as Stamp, "c", 0)]);
    expect(ledger.account()).toMatchObject({ confirmed: 2, lost: 1, duplicatesFromUnconfirmed: 2, partial: 1 });
    expect(ledger.everyConfirmedDelivered()).toBe(false);
  });

  it("counts a delivery asked for after a live ack was confirmed as acked twice, and one less than a lease after another as overlapping", () => {
    const ledger = new Ledger(leaseMs);
    const [stamp] = stamps(0, 1);
    const first = delivery(stamp as Stamp, "a", 0);
    ledger.published(stamps(0, 1).slice(0, 1), true);
    ledger.delivered([first]);
    ledger.ackConfirmed(first, 100);
    ledger.delivered([delivery(stamp as Stamp, "a", 200)]);
    expect(ledger.account()).toMatchObject({ lost: 0, ackedTwice: 1, redelivered: 1, overlapping: 1 });
  });

  it("takes an ack confirmed after the lease for no ack, and a redelivery after the lease as allowed", () => {
    const ledger = new Ledger(leaseMs);
    const [stamp] = stamps(0, 1);
    const first = delivery(stamp as Stamp, "a", 0);
    ledger.published(stamps(0, 1).slice(0, 1), true);
    ledger.delivered([first]);
    ledger.ackConfirmed(first, leaseMs + 10);
    ledger.delivered([delivery(stamp as Stamp, "a", leaseMs + 100)]);
    expect(ledger.account()).toMatchObject({ ackedTwice: 0, redelivered: 1, overlapping: 0 });
  });

  it("counts one try stored as two messages as applied twice", () => {
    const ledger = new Ledger(leaseMs);
    const [stamp] = stamps(0, 1);
    ledger.published(stamps(0, 1).slice(0, 1), true);
    ledger.delivered([delivery(stamp as Stamp, "a", 0), delivery(stamp as Stamp, "b", 0)]);
    expect(ledger.account()).toMatchObject({ appliedTwice: 1 });
  });

  it("tells an answer of the server from a call cut off on the wire", () => {
    const answered = new ConnectError("database is unavailable", Code.Unavailable, { "content-type": "application/grpc" });
    expect(failureOf(answered)).toBe("unavailable");
    expect(failureOf(new ConnectError("fetch failed", Code.Unavailable))).toBe("connection");
    expect(failureOf(new ConnectError("boom", Code.Internal, { "content-type": "application/json" }))).toBe("other: Internal boom");
  });
});
