import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/ports.ts";
import { waitFor } from "../support/wait.ts";
import { type Failure, Ledger, type Stamp } from "./support/ledger.ts";
import { createFaultPostgres, type FaultPostgres } from "./support/postgres.ts";
import { diagnosed, startFaultServer } from "./support/processes.ts";
import { type RestRequest, sendRest } from "./support/rest.ts";
import { expectAccounted, type Summary } from "./support/summary.ts";

let postgres: FaultPostgres;
beforeAll(async () => {
  postgres = await createFaultPostgres();
});
afterAll(() => postgres?.destroy());

const leaseMs = 10_000;
const shutdownTimeoutSeconds = 5;

/**
 * Publishers, consumers and a reader over the REST paths, each on one kept-alive
 * connection of its own, with every request recorded. A request that got no
 * answer is sent again; a publish is sent again as a new try.
 */
function createRestLoad(url: string, onWritten: (request: RestRequest) => void) {
  const ledger = new Ledger(leaseMs);
  const requests: RestRequest[] = [];
  // Requests fully written and not yet ended.
  const pending = new Set<RestRequest>();
  const topic = `shutdown-${Math.random().toString(36).slice(2, 8)}`;
  let stopped = false;
  let publishing = true;
  const send = async (agent: http.Agent, method: string, path: string, body?: unknown) => {
    const request = await sendRest(agent, url, method, path, body, (written) => {
      pending.add(written);
      onWritten(written);
    });
    pending.delete(request);
    requests.push(request);
    const failure: Failure = request.error ? "connection" : request.status === 503 ? "unavailable" : `other: ${request.status}`;
    ledger.called(`${method} ${path.split("?")[0]}`, request.madeAt, (request.status ?? 500) < 300 ? undefined : failure);
    return request;
  };
  const connection = () => new http.Agent({ keepAlive: true, maxSockets: 1 });
  let nextBatch = 0;

  const publisher = async () => {
    const agent = connection();
    while (!stopped && publishing) {
      const batch = nextBatch++;
      for (let attempt = 1; !stopped; attempt++) {
        const stamps: Stamp[] = Array.from({ length: 20 }, (_, n) => ({ seq: batch * 20 + n, batch, try: attempt }));
        const answer = await send(agent, "POST", `/topics/${topic}/messages`, stamps);
        ledger.published(stamps, answer.status === 204);
        if (answer.status === 204) break;
        await sleep(50);
      }
    }
  };
  const consumer = async (id: string) => {
    const agent = connection();
    while (!stopped) {
      const answer = await send(agent, "GET", `/subscriptions/${topic}-sub/messages?consumer_id=${id}&batch_size=50`);
      if (answer.status !== 200) {
        await sleep(50);
        continue;
      }
      const { data } = JSON.parse(answer.text ?? "") as { data: { id: string; payload: Stamp }[] };
      if (data.length === 0) {
        await sleep(20);
        continue;
      }
      const deliveries = data.map((message) => ({ ...message.payload, id: message.id, sentAt: answer.madeAt, receivedAt: answer.endedAt }));
      ledger.delivered(deliveries);
      while (!stopped && performance.now() - answer.madeAt < leaseMs) {
        const ack = await send(
          agent,
          "POST",
          `/subscriptions/${topic}-sub/acks`,
          deliveries.map((delivery) => delivery.id),
        );
        if (ack.status === 204) {
          for (const delivery of deliveries) ledger.ackConfirmed(delivery, ack.endedAt);
          break;
        }
        await sleep(50);
      }
    }
  };
  // Reads the topic, which the lock on the message table does not block.
  const reader = async () => {
    const agent = connection();
    while (!stopped) {
      await send(agent, "GET", `/topics/${topic}`);
      await sleep(5);
    }
  };

  let loops: Promise<unknown> = Promise.resolve();
  let publishers: Promise<unknown> = Promise.resolve();
  return {
    ledger,
    requests,
    pending: () => [...pending],
    async start() {
      const agent = connection();
      expect((await send(agent, "POST", "/topics", { id: topic })).status).toBe(201);
      const subscription = {
        id: `${topic}-sub`,
        topic_id: topic,
        max_delivery_attempts: 1000,
        backoff_min_seconds: 1,
        backoff_max_seconds: 1,
        ack_deadline_seconds: leaseMs / 1000,
      };
      expect((await send(agent, "POST", "/subscriptions", subscription)).status).toBe(201);
      agent.destroy();
      publishers = Promise.all([publisher(), publisher(), publisher()]);
      loops = Promise.all([publishers, consumer("c1"), consumer("c2"), reader()]);
    },
    confirmed: () => ledger.publishes.reduce((sum, call) => sum + (call.confirmed ? call.stamps.length : 0), 0),
    /**
     * Stops publishing, consumes until every confirmed message has been
     * delivered and the subscription holds nothing (or `timeoutMs` passes),
     * stops, and returns what the subscription still holds.
     */
    async drain(timeoutMs = 30_000) {
      publishing = false;
      await publishers;
      const agent = connection();
      const left = async () => {
        const answer = await send(agent, "GET", `/subscriptions/${topic}-sub/metrics`);
        const counts = JSON.parse(answer.text ?? "{}") as { available: number; delivered: number; dlq: number };
        return counts.available + counts.delivered + counts.dlq;
      };
      const deadline = performance.now() + timeoutMs;
      while (performance.now() < deadline && !(ledger.everyConfirmedDelivered() && (await left()) === 0)) await sleep(200);
      stopped = true;
      await loops;
      return left();
    },
    async stop() {
      stopped = true;
      await loops;
    },
  };
}

describe("a server stopped with SIGTERM under load", () => {
  for (const workers of [1, 2]) {
    const serving = workers === 1 ? "one process" : "two workers";
    it(`${serving}: answers every request whose bytes were sent before SIGTERM, applies none twice, and exits 0 within the shutdown timeout`, async () => {
      const env = {
        FASTPUBSUB_DATABASE_URL: postgres.url,
        FASTPUBSUB_API_PORT: String(await freePort()),
        FASTPUBSUB_API_NUM_WORKERS: String(workers),
        FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS: String(shutdownTimeoutSeconds),
        FASTPUBSUB_LOG_LEVEL: "warning",
      };
      const first = await startFaultServer(env);
      let second: Awaited<ReturnType<typeof startFaultServer>> | undefined;
      let arm: ((request: RestRequest) => void) | undefined;
      const load = createRestLoad(first.url, (request) => arm?.(request));
      let sigtermAt = 0;
      let exit: { code: number | null; after: number } | undefined;
      let left: number | undefined;
      const locker = new pg.Client({ connectionString: postgres.url });
      locker.on("error", () => {});
      try {
        await diagnosed([first], async () => {
          await load.start();
          await waitFor(async () => (load.confirmed() >= 1000 ? true : undefined));
          // Publishes that reach the locked message table are still at work when SIGTERM comes.
          await locker.connect();
          await locker.query("BEGIN");
          await locker.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
          await waitFor(async () => {
            const held = load
              .pending()
              .filter((request) => request.path.endsWith("/messages") && performance.now() - (request.writtenAt ?? 0) > 100);
            return held.length >= 2 ? true : undefined;
          });
          // SIGTERM goes the moment the next request (the reader's, which the lock does not hold) is fully written.
          const { exited } = await new Promise<{ exited: Promise<number | null> }>((resolve) => {
            arm = () => {
              arm = undefined;
              sigtermAt = performance.now();
              resolve({ exited: first.stop("SIGTERM") });
            };
          });
          // The held publishes go on for a while after SIGTERM.
          await sleep(1_500);
          await locker.query("ROLLBACK");
          const code = await exited;
          exit = { code, after: performance.now() - sigtermAt };
          second = await startFaultServer(env);
          const confirmed = load.confirmed();
          await waitFor(
            async () => (load.confirmed() >= confirmed + 500 ? true : undefined),
            30_000,
            "publishing to go on after the restart",
          );
          left = await load.drain();
        });
      } finally {
        await locker.end().catch(() => undefined);
        await load.stop();
        await first.stop();
        if (second) expect(await second.stop()).toBe(0);
      }
      const summary: Summary = { ...load.ledger.account(), left, unavailableWhileDown: 0 };
      expect(exit?.code).toBe(0);
      expect(exit?.after).toBeLessThan((shutdownTimeoutSeconds + 1) * 1000);

      const before = load.requests.filter((request) => request.writtenAt !== undefined && request.writtenAt < sigtermAt);
      const inFlight = before.filter((request) => request.endedAt > sigtermAt);
      const after = load.requests.filter((request) => request.writtenAt === undefined || request.writtenAt >= sigtermAt);
      const success = (request: RestRequest) => request.status !== undefined && request.status < 300;
      const show = (request: RestRequest) => `${request.method} ${request.path}: ${request.status ?? request.error} ${request.text ?? ""}`;
      console.log(
        `faults | SIGTERM under load, ${serving} | in flight at SIGTERM ${inFlight.length} (` +
          `${inFlight.filter((request) => request.method === "POST").length} publishes or acks held by a lock), ` +
          `refused or reset after it ${after.filter((request) => request.error).length}, exit ${exit?.code} after ${((exit?.after ?? 0) / 1000).toFixed(2)} s`,
      );
      expectAccounted(`SIGTERM under load, ${serving}`, summary, [...first.unexpectedExits(), ...(second?.unexpectedExits() ?? [])]);
      // Every request sent before SIGTERM got its answer, and a good one.
      expect(before.filter((request) => !success(request)).map(show)).toEqual([]);
      expect(inFlight.filter((request) => request.method === "POST").length).toBeGreaterThan(0);
      // After it, a connection may be refused or reset, and the request was then not applied.
      expect(after.filter((request) => !success(request) && request.error === undefined).map(show)).toEqual([]);
      expect(after.filter((request) => request.error).length).toBeGreaterThan(0);
      expect(summary.duplicatesFromUnconfirmed).toBe(0);
      expect(summary.appliedTwice).toBe(0);
    });
  }

  it("one process: a request held past the shutdown timeout does not hold the exit", async () => {
    const shutdownTimeoutMs = 2_000;
    const server = await startFaultServer({
      FASTPUBSUB_DATABASE_URL: postgres.url,
      FASTPUBSUB_API_PORT: String(await freePort()),
      FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS: String(shutdownTimeoutMs / 1000),
      FASTPUBSUB_LOG_LEVEL: "warning",
    });
    const agent = new http.Agent({ keepAlive: true });
    const locker = new pg.Client({ connectionString: postgres.url });
    locker.on("error", () => {});
    try {
      expect((await sendRest(agent, server.url, "POST", "/topics", { id: "held" })).status).toBe(201);
      await locker.connect();
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
      let written = 0;
      const publish = sendRest(agent, server.url, "POST", "/topics/held/messages", [{ n: 1 }], () => {
        written = performance.now();
      });
      await waitFor(async () => (written > 0 && performance.now() - written > 200 ? true : undefined));
      const sigtermAt = performance.now();
      const code = await server.stop("SIGTERM");
      const after = performance.now() - sigtermAt;
      console.log(`faults | SIGTERM with a request held past the shutdown timeout | exit ${code} after ${(after / 1000).toFixed(2)} s`);
      expect(code).toBe(0);
      expect(after).toBeLessThan(shutdownTimeoutMs + 1_000);
      expect((await publish).status).not.toBe(204);
    } finally {
      await locker.end();
      agent.destroy();
      await server.stop();
    }
  });
});
