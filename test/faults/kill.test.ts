import { once } from "node:events";
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/ports.ts";
import { waitFor } from "../support/wait.ts";
import { watchHealth } from "./support/health.ts";
import type { Delivery } from "./support/ledger.ts";
import { createFaultPostgres, type FaultPostgres } from "./support/postgres.ts";
import { connectionsOf, type FaultServer, startFaultServer } from "./support/processes.ts";
import { runAccounted } from "./support/summary.ts";
import { createWorkload, type Workload } from "./support/workload.ts";

let postgres: FaultPostgres;
beforeAll(async () => {
  postgres = await createFaultPostgres();
});
afterAll(() => postgres?.destroy());

// Deliveries expire soon, so that those a killed server made come back within the test.
const leaseSeconds = 1;

async function startServer(workers: number) {
  return startFaultServer({
    FASTPUBSUB_DATABASE_URL: postgres.url,
    FASTPUBSUB_API_PORT: String(await freePort()),
    FASTPUBSUB_API_NUM_WORKERS: String(workers),
    FASTPUBSUB_LOG_LEVEL: "warning",
  });
}

function startWorkload(server: FaultServer) {
  return createWorkload({
    url: server.url,
    protocols: ["grpc", "connect", "grpc-web"],
    publishers: 2,
    consumers: 3,
    batchSize: 20,
    publishPauseMs: 10,
    holdMs: 200,
    leaseMs: leaseSeconds * 1000,
  });
}

/** Waits until a consumer has just received deliveries, which it will hold for a while before acking, and returns them. */
function deliveriesHeld(workload: Workload) {
  return waitFor(async () => {
    const held = workload.held().filter((delivery) => performance.now() - delivery.receivedAt < 50);
    return held.length > 0 ? held : undefined;
  });
}

/** The held deliveries whose message was delivered again, none of them while the first delivery was live. */
function cameBack(workload: Workload, held: Delivery[]) {
  return held.filter((first) => workload.ledger.deliveries.some((again) => again.id === first.id && again.sentAt > first.receivedAt));
}

/**
 * Sends four GETs of `url` at once, each on a new connection that stays open,
 * and returns their statuses and the agent that holds the connections: the
 * primary hands new connections to its listening workers in turn.
 */
async function getOnFourConnections(url: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const statuses = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const request = http.get(url, { agent, timeout: 5_000 });
      request.on("timeout", () => request.destroy(new Error("no answer within 5 s")));
      const [response] = (await once(request, "response")) as [http.IncomingMessage];
      response.resume();
      return response.statusCode;
    }),
  );
  return { statuses, agent };
}

/** Waits until the server has `count` workers, none of them in `gone`. */
function replaced(server: FaultServer, gone: number[], count = 2) {
  return waitFor(
    async () => {
      const workers = server.workers();
      return workers.length === count && !workers.some((pid) => gone.includes(pid)) ? workers : undefined;
    },
    15_000,
    "the primary to replace its workers",
  );
}

describe("a server killed mid-consume", () => {
  it("one process: started again after SIGKILL, it loses nothing, and the messages it had delivered come back after their lease", async () => {
    const server = await startServer(1);
    const workload = startWorkload(server);
    let held: Delivery[] = [];
    const summary = await runAccounted("kill -9 of the server, one process", [server], workload, async () => {
      await workload.start();
      await workload.confirmedAtLeast(1000);
      held = await deliveriesHeld(workload);
      const fault = workload.fault();
      // Down for longer than a lease, so the deliveries it made expire before anyone can ack them.
      await server.crashAndRestart(1.5 * leaseSeconds * 1000);
      fault.back();
      await fault.recovered();
      await workload.confirmedAtLeast(workload.confirmed() + 500);
      await workload.drain();
    });
    expect(summary.connectionErrors).toBeGreaterThan(0);
    expect(summary.otherErrors).toEqual({});
    expect(cameBack(workload, held).length).toBeGreaterThan(0);
  });

  it("two workers: the primary replaces each worker killed with SIGKILL mid-consume, and nothing is lost", async () => {
    const server = await startServer(2);
    const workload = startWorkload(server);
    const summary = await runAccounted("kill -9 of each worker of two in turn", [server], workload, async () => {
      await workload.start();
      // One worker, then the other: whichever holds the consumers' connections is killed under them.
      const victims = await waitFor(async () => (server.workers().length === 2 ? server.workers() : undefined));
      for (const [n, victim] of victims.entries()) {
        await workload.confirmedAtLeast(workload.confirmed() + 500);
        await deliveriesHeld(workload);
        const fault = workload.fault();
        server.kill(victim, "SIGKILL");
        await replaced(server, victims.slice(0, n + 1));
        fault.back();
        await fault.recovered();
      }
      await workload.confirmedAtLeast(workload.confirmed() + 500);
      await workload.drain();
    });
    expect(summary.connectionErrors).toBeGreaterThan(0);
    expect(summary.otherErrors).toEqual({});
  });

  it("two workers: workers killed while PostgreSQL is down come back, answer liveness and 503 meanwhile, and serve once it is back", async () => {
    const server = await startServer(2);
    const workload = startWorkload(server);
    const health = watchHealth(server.url, `/subscriptions/${workload.subscriptionId}/metrics`);
    const summary = await runAccounted(
      "kill -9 of both workers while PostgreSQL is down",
      [server],
      workload,
      async () => {
        await workload.start();
        const victims = await waitFor(async () => (server.workers().length === 2 ? server.workers() : undefined));
        await workload.confirmedAtLeast(1000);
        const fault = workload.fault();
        await postgres.stop("SIGINT");
        for (const victim of victims) server.kill(victim, "SIGKILL");
        const killedAt = performance.now();
        await replaced(server, victims);
        // Only workers born while PostgreSQL is down serve now: they must answer.
        const answering = await waitFor(
          async () => health.between(killedAt).find((sample) => sample.liveness === 200)?.at,
          15_000,
          "a respawned worker to answer /liveness",
        );
        await waitFor(async () => (health.between(answering).length >= 10 ? true : undefined));
        const down = health.between(answering);
        await postgres.start();
        fault.back();
        await fault.recovered();
        const readyAt = await health.readyAfter(performance.now());
        // Both respawned workers serve: four new connections, spread over both, all answered 200. A
        // worker retries its database with backoff (up to 2 s between tries), so it may lag the other.
        const port = Number(new URL(server.url).port);
        await waitFor(
          async () => {
            const { statuses, agent } = await getOnFourConnections(`${server.url}/readiness`);
            const spread = server.workers().every((pid) => connectionsOf(pid, port) > 0);
            agent.destroy();
            return spread && statuses.every((status) => status === 200) ? true : undefined;
          },
          5_000,
          "both respawned workers to answer /readiness 200",
        );
        await workload.confirmedAtLeast(workload.confirmed() + 500);
        await workload.drain();

        expect(down.filter((sample) => sample.liveness !== 200 || sample.readiness !== 503 || sample.rest !== 503)).toEqual([]);
        expect(health.between(readyAt).filter((sample) => sample.liveness !== 200)).toEqual([]);
      },
      () => health.stop(),
    );
    expect(summary.unavailableWhileDown).toBeGreaterThan(0);
    expect(summary.otherErrors).toEqual({});
  });
});
