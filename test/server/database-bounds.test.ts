import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.ts";
import { createLogger } from "../../src/logger.ts";
import { startServer } from "../../src/server/server.ts";
import { query } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { call } from "../support/http.ts";
import { uniqueId } from "../support/ids.ts";
import { freePort } from "../support/ports.ts";
import { createApi } from "../support/protocols.ts";
import { createTestDatabase, startTestServer, type TestServer } from "../support/server.ts";
import { createTcpProxy } from "../support/tcp-proxy.ts";
import { waitFor } from "../support/wait.ts";

describe("a server started while PostgreSQL does not answer", () => {
  it("answers liveness, 503 on readiness and on every call, then migrates and serves once the database is back", async () => {
    const database = new URL(await createTestDatabase({ empty: true }));
    const proxy = createTcpProxy(await freePort(), Number(database.port || 5432));
    const behindProxy = new URL(database);
    behindProxy.port = String(proxy.port);
    const config = loadConfig({
      FASTPUBSUB_DATABASE_URL: behindProxy.toString(),
      FASTPUBSUB_API_HOST: "127.0.0.1",
      FASTPUBSUB_API_PORT: "0",
      FASTPUBSUB_LOG_LEVEL: "critical",
    });
    const server = await startServer(config, createLogger({ level: "critical", format: "%(message)s" }));
    try {
      expect(await call(server.url, "GET", "/liveness")).toMatchObject({ status: 200, json: { status: "alive" } });
      expect(await call(server.url, "GET", "/readiness")).toMatchObject({ status: 503, json: { detail: "database is down" } });
      expect(await call(server.url, "POST", "/topics", { id: "early" })).toMatchObject({
        status: 503,
        json: { detail: "database is unavailable" },
      });
      await expectCode(createApi("grpc", server.url).topics.listTopics({}), Code.Unavailable);

      await proxy.start();
      await waitFor(async () => ((await call(server.url, "GET", "/readiness")).status === 200 ? true : undefined), 10_000, "readiness");
      expect(await call(server.url, "POST", "/topics", { id: "late" })).toMatchObject({ status: 201 });
      const applied = await query(database.toString(), "SELECT count(*)::int AS n FROM schema_migrations");
      expect(applied[0]?.n).toBeGreaterThan(0);
    } finally {
      await server.close();
      await proxy.close();
    }
  });
});

describe("a database call that gets no answer in time", () => {
  let server: TestServer;
  let locker: pg.Client;
  beforeAll(async () => {
    server = await startTestServer({
      FASTPUBSUB_DATABASE_STATEMENT_TIMEOUT_SECONDS: "1",
      FASTPUBSUB_DATABASE_POOL_TIMEOUT_SECONDS: "1",
      FASTPUBSUB_DATABASE_POOL_SIZE: "1",
      FASTPUBSUB_DATABASE_MAX_OVERFLOW: "1",
    });
    locker = new pg.Client({ connectionString: server.databaseUrl });
    await locker.connect();
  });
  afterAll(async () => {
    await locker.end();
    await server.close();
  });

  /** Runs `work` while the message table is locked by another session. */
  async function whileLocked(work: () => Promise<void>) {
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
    try {
      await work();
    } finally {
      await locker.query("ROLLBACK");
    }
  }

  it("fails as unavailable within the statement timeout, writes nothing, and readiness says so until the lock goes", async () => {
    const topic = uniqueId("stall");
    await call(server.url, "POST", "/topics", { id: topic });
    await call(server.url, "POST", "/subscriptions", { id: topic, topic_id: topic });
    await whileLocked(async () => {
      const started = performance.now();
      const published = await call(server.url, "POST", `/topics/${topic}/messages`, [{ n: 1 }]);
      expect(published).toMatchObject({ status: 503, json: { detail: "database is unavailable" } });
      expect(performance.now() - started).toBeLessThan(5_000);
      await expectCode(
        createApi("grpc", server.url).subscriptions.consumeMessages({ subscriptionId: topic, consumerId: "w" }),
        Code.Unavailable,
      );
      expect((await call(server.url, "GET", "/readiness")).status).toBe(503);
    });
    expect((await call(server.url, "GET", "/readiness")).status).toBe(200);
    expect(await call(server.url, "GET", `/subscriptions/${topic}/messages?consumer_id=w`)).toMatchObject({
      status: 200,
      json: { data: [] },
    });
  });

  it("fails as unavailable when every connection is taken past the pool timeout, and half-writes nothing", async () => {
    const topic = uniqueId("full");
    await call(server.url, "POST", "/topics", { id: topic });
    await call(server.url, "POST", "/subscriptions", { id: topic, topic_id: topic });
    await whileLocked(async () => {
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, n) => call(server.url, "POST", `/topics/${topic}/messages`, [{ n }, { n: n + 100 }])),
      );
      expect(answers.map((answer) => answer.status)).toEqual(Array(6).fill(503));
    });
    const metrics = await call(server.url, "GET", `/subscriptions/${topic}/metrics`);
    expect(metrics.json).toMatchObject({ available: 0, delivered: 0, dlq: 0 });
  });
});
