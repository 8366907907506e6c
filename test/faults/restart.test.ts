import { setTimeout as sleep } from "node:timers/promises";
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

// The crash this guards against came in 2 of 6 fast restarts: five per server make missing it
// unlikely (~13% for one server, ~2% for both) at about two seconds each.
const restarts = ["fast", "fast", "fast", "fast", "fast", "immediate", "immediate"] as const;
const leaseSeconds = 3;

describe("PostgreSQL restarting under load", () => {
  for (const workers of [1, 2]) {
    const serving = workers === 1 ? "one process" : "two workers";
    it(`${serving}: answers unavailable while it is down, never exits, recovers by itself, and accounts for every message`, async () => {
      const server = await startFaultServer({
        FASTPUBSUB_DATABASE_URL: postgres.url,
        FASTPUBSUB_API_PORT: String(await freePort()),
        FASTPUBSUB_API_NUM_WORKERS: String(workers),
        FASTPUBSUB_LOG_LEVEL: "warning",
      });
      const workload = createWorkload({
        url: server.url,
        protocols: ["connect", "grpc", "grpc-web"],
        publishers: 2,
        consumers: 2,
        batchSize: 20,
        publishPauseMs: 10,
        holdMs: 20,
        leaseMs: leaseSeconds * 1000,
      });
      const health = watchHealth(server.url, `/subscriptions/${workload.subscriptionId}/metrics`);
      const downWindows: { from: number; to: number }[] = [];
      const summary = await runAccounted(
        `PostgreSQL restart, ${serving}, ${restarts.length} restarts (fast and immediate)`,
        [server],
        workload,
        async () => {
          await workload.start();
          for (const restart of restarts) {
            await workload.confirmedAtLeast(workload.confirmed() + 500);
            const fault = workload.fault();
            await postgres.stop(restart === "fast" ? "SIGINT" : "SIGQUIT");
            const from = performance.now();
            // The outage itself: an immediate shutdown is a crash, and its PostgreSQL comes back 3 s later.
            if (restart === "immediate") await sleep(3_000);
            const to = performance.now();
            await postgres.start();
            fault.back();
            const { unavailable } = await fault.recovered();
            await health.readyAfter(to);
            if (restart === "immediate") {
              expect(unavailable, "unavailable answers while PostgreSQL was down").toBeGreaterThan(0);
              downWindows.push({ from, to });
            }
          }
          await workload.drain();
        },
        () => health.stop(),
      );
      // Every failure the clients saw was an answer: unavailable.
      expect({ connectionErrors: summary.connectionErrors, otherErrors: summary.otherErrors }).toEqual({
        connectionErrors: 0,
        otherErrors: {},
      });
      expect(health.samples.filter((sample) => sample.liveness !== 200)).toEqual([]);
      for (const window of downWindows) {
        const down = health.between(window.from, window.to);
        expect(down.length).toBeGreaterThan(0);
        expect(down.filter((sample) => sample.readiness !== 503 || sample.rest !== 503)).toEqual([]);
        for (const sample of down) expect(JSON.parse(sample.restBody)).toEqual({ detail: expect.any(String) });
      }
    });
  }
});
