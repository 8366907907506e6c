import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/ports.ts";
import { watchHealth } from "./support/health.ts";
import { createFaultPostgres, type FaultPostgres } from "./support/postgres.ts";
import { startFaultServer } from "./support/processes.ts";
import { runAccounted } from "./support/summary.ts";
import { createWorkload } from "./support/workload.ts";

let postgres: FaultPostgres;
beforeAll(async () => {
  postgres = await createFaultPostgres();
});
afterAll(() => postgres?.destroy());

// What a call may take beyond the configured bounds on this busy 2-core machine.
const slackMs = 1_000;

/** Takes an ACCESS EXCLUSIVE lock on the message table in a transaction of its own, and returns how to release it. */
async function lockMessages() {
  const client = new pg.Client({ connectionString: postgres.url });
  client.on("error", () => {});
  await client.connect();
  await client.query("BEGIN");
  await client.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
  return async () => {
    await client.query("ROLLBACK");
    await client.end();
  };
}

describe("PostgreSQL stalled by a lock on the hot table", () => {
  it("calls fail with unavailable within the statement timeout instead of piling up, readiness answers 503 until the lock goes, and a publish that timed out left nothing", async () => {
    const statementTimeoutMs = 2_000;
    const stallMs = 3 * statementTimeoutMs;
    const server = await startFaultServer({
      FASTPUBSUB_DATABASE_URL: postgres.url,
      FASTPUBSUB_API_PORT: String(await freePort()),
      FASTPUBSUB_LOG_LEVEL: "warning",
      FASTPUBSUB_DATABASE_STATEMENT_TIMEOUT_SECONDS: String(statementTimeoutMs / 1000),
    });
    const workload = createWorkload({
      url: server.url,
      protocols: ["connect", "grpc"],
      publishers: 3,
      consumers: 2,
      batchSize: 20,
      publishPauseMs: 10,
      holdMs: 20,
      leaseMs: 10_000,
    });
    const health = watchHealth(server.url, `/subscriptions/${workload.subscriptionId}/metrics`);
    let stall = { from: 0, to: 0 };
    const summary = await runAccounted(
      "hot table locked for 3× the statement timeout",
      [server],
      workload,
      async () => {
        await workload.start();
        await workload.confirmedAtLeast(500);
        const fault = workload.fault();
        const release = await lockMessages();
        const from = performance.now();
        // The stall itself: the lock is held three statement timeouts long.
        await sleep(stallMs).finally(release);
        const to = performance.now();
        stall = { from, to };
        fault.back();
        await fault.recovered();
        await health.readyAfter(to);
        await workload.confirmedAtLeast(workload.confirmed() + 500);
        await workload.drain();
      },
      () => health.stop(),
    );

    const stalled = workload.ledger.calls.filter((call) => call.endedAt > stall.from && call.sentAt < stall.to);
    expect(stalled.filter((call) => call.failure === "unavailable" && call.method === "publish").length).toBeGreaterThan(0);
    expect(stalled.filter((call) => call.failure !== undefined && call.failure !== "unavailable")).toEqual([]);
    // No call waits out the stall: each one ends within the statement timeout (+ slack).
    const slowest = Math.max(...workload.ledger.calls.map((call) => call.endedAt - call.sentAt));
    console.log(
      `faults | hot table locked | slowest call ${(slowest / 1000).toFixed(2)} s (statement timeout ${statementTimeoutMs / 1000} s)`,
    );
    expect(slowest).toBeLessThan(statementTimeoutMs + slackMs);
    // A publish that timed out was rolled back: its retry made no double.
    expect(summary.duplicatesFromUnconfirmed).toBe(0);
    // A readiness probe begun during the stall, with time to time out before its end, is 503.
    const probed = health.between(stall.from, stall.to - statementTimeoutMs - slackMs);
    expect(probed.length).toBeGreaterThan(0);
    expect(probed.filter((sample) => sample.readiness !== 503 || sample.liveness !== 200)).toEqual([]);
  });

  it("with more calls than connections, calls wait for a connection for the pool timeout, then fail with unavailable, and a failed batch leaves no part of itself", async () => {
    const poolTimeoutMs = 1_000;
    const statementTimeoutMs = 3_000;
    const server = await startFaultServer({
      FASTPUBSUB_DATABASE_URL: postgres.url,
      FASTPUBSUB_API_PORT: String(await freePort()),
      FASTPUBSUB_LOG_LEVEL: "warning",
      FASTPUBSUB_DATABASE_POOL_SIZE: "1",
      FASTPUBSUB_DATABASE_MAX_OVERFLOW: "1",
      FASTPUBSUB_DATABASE_POOL_TIMEOUT_SECONDS: String(poolTimeoutMs / 1000),
      FASTPUBSUB_DATABASE_STATEMENT_TIMEOUT_SECONDS: String(statementTimeoutMs / 1000),
    });
    // Twelve publishers against two connections of the message pool.
    const workload = createWorkload({
      url: server.url,
      protocols: ["grpc", "connect", "grpc-web"],
      publishers: 12,
      consumers: 2,
      batchSize: 10,
      publishPauseMs: 20,
      holdMs: 20,
      leaseMs: 10_000,
    });
    let stall = { from: 0, to: 0 };
    const summary = await runAccounted("pool of 2 exhausted by 12 publishers on a locked table", [server], workload, async () => {
      await workload.start();
      await workload.confirmedAtLeast(500);
      const fault = workload.fault();
      // The lock keeps both connections busy, so the other calls have none to get.
      const release = await lockMessages();
      const from = performance.now();
      await sleep(2 * statementTimeoutMs).finally(release);
      const to = performance.now();
      stall = { from, to };
      fault.back();
      await fault.recovered();
      await workload.confirmedAtLeast(workload.confirmed() + 500);
      await workload.drain();
    });

    const stalled = workload.ledger.calls.filter((call) => call.endedAt > stall.from && call.sentAt < stall.to);
    expect(stalled.filter((call) => call.failure !== undefined && call.failure !== "unavailable")).toEqual([]);
    // Those that found no connection queued for the pool timeout, then failed.
    const queued = stalled.filter((call) => call.failure === "unavailable" && call.endedAt - call.sentAt < statementTimeoutMs - 200);
    expect(queued.length).toBeGreaterThan(0);
    for (const call of queued) expect(call.endedAt - call.sentAt).toBeGreaterThan(poolTimeoutMs - 100);
    // No call waits longer than a connection and a statement may take.
    const slowest = Math.max(...workload.ledger.calls.map((call) => call.endedAt - call.sentAt));
    const waits = queued.map((call) => call.endedAt - call.sentAt);
    console.log(
      `faults | pool exhausted | ${queued.length} calls failed after waiting ${(Math.min(...waits) / 1000).toFixed(2)}–${(Math.max(...waits) / 1000).toFixed(2)} s ` +
        `for a connection (pool timeout ${poolTimeoutMs / 1000} s); slowest call ${(slowest / 1000).toFixed(2)} s`,
    );
    expect(slowest).toBeLessThan(poolTimeoutMs + statementTimeoutMs + slackMs);
    // A failed publish of a batch left none of it.
    expect(summary.duplicatesFromUnconfirmed).toBe(0);
    expect(summary.partial).toBe(0);
  });
});
