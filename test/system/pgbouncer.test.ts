import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../src/config/config.ts";
import { listenerName } from "../../src/db/notifications.ts";
import { createDatabasePool } from "../../src/db/pool.ts";
import { maintainTables } from "../../src/jobs/maintenance.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningServer, startServer } from "../../src/server/server.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { query } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { uniqueId } from "../support/ids.ts";
import { metrics } from "../support/messages.ts";
import { type PgBouncer, pgbouncerVersion, startPgBouncer } from "../support/pgbouncer.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { createTestDatabase } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

/*
 * The whole server behind Debian's PgBouncer in transaction mode: every
 * transaction may run on another server connection, and a LISTEN stays with
 * whichever one ran it. PgBouncer 1.18 (Debian 12) keeps no named prepared
 * statements, so the servers run with FASTPUBSUB_DATABASE_PREPARED_STATEMENTS=false,
 * and it refuses the timeouts the server sends at startup unless
 * ignore_startup_parameters lists them.
 */

const cannotListen = "cannot listen for notifications; falling back to polling the database until it can";
const secret = randomBytes(32).toString("hex");

let bouncer: PgBouncer;
beforeAll(async () => {
  console.log(`pgbouncer | PgBouncer ${pgbouncerVersion()}`);
  bouncer = await startPgBouncer(inject("adminUrl"), {
    // Fewer server connections than the servers' pools have: transactions of different clients share them.
    default_pool_size: 4,
    ignore_startup_parameters: "statement_timeout, idle_in_transaction_session_timeout",
  });
});
afterAll(() => bouncer?.stop());

/** A server started in this process, with what it logged. */
interface LoggedServer extends RunningServer {
  lines: { levelname: string; message: string }[];
  /** How many lines it logged with `message`. */
  count(message: string): number;
}

/** Starts a server whose database connections go through PgBouncer to `databaseUrl`, with authentication on. */
async function startServerBehind(databaseUrl: string, env: Record<string, string> = {}): Promise<LoggedServer> {
  const config = loadConfig({
    FASTPUBSUB_DATABASE_URL: bouncer.urlOf(databaseUrl),
    FASTPUBSUB_DATABASE_PREPARED_STATEMENTS: "false",
    FASTPUBSUB_API_HOST: "127.0.0.1",
    FASTPUBSUB_API_PORT: "0",
    FASTPUBSUB_AUTH_ENABLED: "true",
    FASTPUBSUB_AUTH_SECRET_KEY: secret,
    // The jobs run through PgBouncer too, often enough to run during the tests.
    FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS: "1",
    FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: "1",
    FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "1",
    ...env,
  });
  const lines: LoggedServer["lines"] = [];
  const logger = createLogger({
    level: "info",
    format: "%(levelname)s %(message)s",
    write: (line) => lines.push(JSON.parse(line) as LoggedServer["lines"][number]),
  });
  const server = await startServer(config, logger);
  return { ...server, lines, count: (message) => lines.filter((line) => line.message === message).length };
}

/** Registers a client with `scopes` directly in `databaseUrl` and returns a token for it from `server`. */
async function tokenFor(databaseUrl: string, server: RunningServer, scopes: string) {
  const db = createDatabasePool(databaseUrl, { maxPoolSize: 1 });
  try {
    const client = await registerClient(db, { name: `pgbouncer ${scopes}`, scopes });
    const { accessToken } = await createApi("connect-json", server.url).auth.createToken({
      clientId: client.id,
      clientSecret: client.secret,
    });
    return { id: client.id, token: accessToken };
  } finally {
    await db.end();
  }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Long-polls a subscription over REST for up to `waitSeconds`; resolves with the ids it got and how long it took. */
async function longPoll(url: string, token: string, subscriptionId: string, waitSeconds: number) {
  const started = performance.now();
  const response = await fetch(
    new URL(`/subscriptions/${subscriptionId}/messages?consumer_id=poller&batch_size=10&wait_seconds=${waitSeconds}`, url),
    { headers: bearer(token) },
  );
  const body = (await response.json()) as { data?: { id: string }[] };
  return { status: response.status, ids: (body.data ?? []).map((message) => message.id), ms: performance.now() - started };
}

/** Creates a topic with one subscription through `api`. */
async function createQueue(api: Api) {
  const topicId = uniqueId("bounced");
  const subscriptionId = `${topicId}-sub`;
  await api.topics.createTopic({ id: topicId });
  await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
  return { topicId, subscriptionId };
}

/**
 * Long-polls a new subscription on `poller` while a message is published through `publisher`;
 * expects the poll to get it, and logs after how long, under `label`.
 */
async function expectWokenAcross(publisher: string, poller: string, token: string, label: string) {
  const api = createApi("connect-json", publisher, bearer(token));
  const { topicId, subscriptionId } = await createQueue(api);
  const polled = longPoll(poller, token, subscriptionId, 10);
  await sleep(500);
  await api.topics.publishMessages({ topicId, messages: [{ hello: label }] });
  const answer = await polled;
  expect(answer.status).toBe(200);
  expect(answer.ids).toHaveLength(1);
  console.log(`pgbouncer | ${label}: the long-poll got the message ${Math.round(answer.ms - 500)} ms after the publish`);
}

/**
 * A client of `b` whose token was used there twice (so that `b` may cache its client's state),
 * then revoked through `a`, by renaming its client with the admin token.
 */
async function revokedAfterUse(databaseUrl: string, a: RunningServer, b: RunningServer, adminToken: string) {
  const reader = await tokenFor(databaseUrl, a, "topics:read");
  const onB = createApi("grpc", b.url, bearer(reader.token));
  await onB.topics.listTopics({});
  await onB.topics.listTopics({});
  await createApi("connect-json", a.url, bearer(adminToken)).clients.updateClient({
    id: reader.id,
    name: "revoked",
    scopes: "topics:read",
  });
  return onB;
}

/** The pids of PostgreSQL backends that PgBouncer holds as server connections. */
async function pgbouncerBackends() {
  const servers = await bouncer.admin<{ remote_pid: string | number }>("SHOW SERVERS");
  return new Set(servers.map((server) => Number(server.remote_pid)));
}

/** The listening connections of `databaseUrl`'s database as PostgreSQL sees them. */
function listenersOf(databaseUrl: string) {
  return query<{ pid: number; query: string }>(
    databaseUrl,
    "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
    [listenerName],
  );
}

/**
 * Expects no advisory lock in `databaseUrl`'s database: a transaction's lock (the maintenance runs
 * every second) comes and goes, and only one left by a session outlives the 2 s it is given.
 */
async function expectNoAdvisoryLocks(databaseUrl: string) {
  const locks = () =>
    query(
      databaseUrl,
      "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
  const deadline = performance.now() + 2_000;
  let held = await locks();
  while (held.length > 0 && performance.now() < deadline) {
    await sleep(100);
    held = await locks();
  }
  expect(held).toEqual([]);
}

describe("servers behind PgBouncer in transaction mode", () => {
  let databaseUrl: string;
  let a: LoggedServer;
  let b: LoggedServer;
  let admin: { id: string; token: string };
  beforeAll(async () => {
    // An empty database: the first server applies the migrations through PgBouncer.
    databaseUrl = await createTestDatabase({ empty: true });
    a = await startServerBehind(databaseUrl);
    b = await startServerBehind(databaseUrl);
    admin = await tokenFor(databaseUrl, a, "*");
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it("applies the migrations, and a second server starts after them", async () => {
    expect(a.count("applied migrations")).toBe(1);
    expect(b.count("applied migrations")).toBe(0);
    expect(b.count("fastpubsub is serving")).toBe(1);
    await expectNoAdvisoryLocks(databaseUrl);
  });

  it("publishes, consumes and acks over every protocol at once, each message delivered once", async () => {
    await Promise.all(
      protocols.map(async (protocol, n) => {
        const api = createApi(protocol, (n % 2 === 0 ? a : b).url, bearer(admin.token));
        const { topicId, subscriptionId } = await createQueue(api);
        await Promise.all(
          Array.from({ length: 10 }, (_, batch) =>
            api.topics.publishMessages({ topicId, messages: Array.from({ length: 5 }, (_, i) => ({ batch, i })) }),
          ),
        );
        const consumers = await Promise.all(
          ["w1", "w2", "w3"].map(async (consumerId) => {
            const seen: string[] = [];
            for (;;) {
              const { data } = await api.subscriptions.consumeMessages({ subscriptionId, consumerId, batchSize: 4 });
              if (data.length === 0) return seen;
              await api.subscriptions.ackMessages({ subscriptionId, consumerId, messageIds: data.map((message) => message.id) });
              seen.push(...data.map((message) => message.id));
            }
          }),
        );
        const delivered = consumers.flat();
        expect(delivered).toHaveLength(50);
        expect(new Set(delivered).size).toBe(50);
        expect(await metrics(api, subscriptionId)).toMatchObject({ available: 0, delivered: 0, acked: 50 });
      }),
    );
  });

  it("logs that it cannot listen, and a long-poll on one server still gets a message published through the other", async () => {
    await waitFor(async () => (a.count(cannotListen) > 0 && b.count(cannotListen) > 0 ? true : undefined), 10_000, "the warnings");
    await expectWokenAcross(a.url, b.url, admin.token, "polling");
  });

  it("refuses a revoked token at once on the other server, as it caches no client state while it cannot listen", async () => {
    const onB = await revokedAfterUse(databaseUrl, a, b, admin.token);
    await expectCode(onB.topics.listTopics({}), Code.Unauthenticated);
  });

  it("while it retries every second, logs one warning, never claims to listen, and keeps its connections bounded", async () => {
    const samples: { listeners: number; clients: number; backends: number }[] = [];
    for (const started = performance.now(); performance.now() - started < 10_000; ) {
      const clients = await bouncer.admin<{ database: string; application_name: string }>("SHOW CLIENTS");
      const ours = clients.filter((client) => databaseUrl.endsWith(`/${client.database}`));
      const [backends] = await query<{ n: number }>(
        databaseUrl,
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
      );
      samples.push({
        listeners: ours.filter((client) => client.application_name === listenerName).length,
        clients: ours.length,
        backends: backends?.n ?? 0,
      });
      await sleep(500);
    }
    const most = (key: keyof (typeof samples)[number]) => Math.max(...samples.map((sample) => sample[key]));
    console.log(
      `pgbouncer | over 10 s of retries: at most ${most("listeners")} listening clients, ${most("clients")} clients of PgBouncer, ${most("backends")} backends`,
    );
    // One listening connection per server at a time; each server's pools (at most 5 + 15 connections); PgBouncer's pool.
    expect(most("listeners")).toBeLessThanOrEqual(2);
    expect(most("clients")).toBeLessThanOrEqual(2 * (1 + 5 + 15 + 1));
    expect(most("backends")).toBeLessThanOrEqual(4);
    for (const server of [a, b]) {
      expect(server.count(cannotListen)).toBe(1);
      expect(server.count("listening for notifications")).toBe(0);
      expect(server.count("listening for notifications again")).toBe(0);
    }
  });

  it("runs the table maintenance of two servers at once, and leaves no advisory lock on PgBouncer's connections", async () => {
    const pools = [1, 2].map(() => createDatabasePool(bouncer.urlOf(databaseUrl), { maxPoolSize: 2 }));
    try {
      const runs = await Promise.all(pools.map((pool) => maintainTables(pool, bouncer.urlOf(databaseUrl))));
      expect(runs).toHaveLength(2);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
    await expectNoAdvisoryLocks(databaseUrl);
    for (const server of [a, b]) expect(server.lines.filter((line) => line.message.endsWith("failed"))).toEqual([]);
  });
});

describe("servers behind PgBouncer whose FASTPUBSUB_DATABASE_LISTEN_URL goes straight to PostgreSQL", () => {
  let databaseUrl: string;
  let a: LoggedServer;
  let b: LoggedServer;
  let admin: { id: string; token: string };
  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    a = await startServerBehind(databaseUrl, { FASTPUBSUB_DATABASE_LISTEN_URL: databaseUrl });
    b = await startServerBehind(databaseUrl, { FASTPUBSUB_DATABASE_LISTEN_URL: databaseUrl });
    admin = await tokenFor(databaseUrl, a, "*");
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it("listen on direct connections, as PostgreSQL shows, and warn of nothing", async () => {
    await waitFor(
      async () => (a.count("listening for notifications") === 1 && b.count("listening for notifications") === 1 ? true : undefined),
      10_000,
      "both servers to listen",
    );
    const listeners = await listenersOf(databaseUrl);
    expect(listeners).toHaveLength(2);
    const bounced = await pgbouncerBackends();
    for (const listener of listeners) {
      expect(listener.query).toMatch(/^LISTEN /);
      expect(bounced.has(listener.pid)).toBe(false);
    }
    expect(a.count(cannotListen) + b.count(cannotListen)).toBe(0);
  });

  it("wakes a long-poll on one server when a message is published through the other", async () => {
    await expectWokenAcross(a.url, b.url, admin.token, "notified");
    expect(b.count(cannotListen)).toBe(0);
  });

  it("drops a cached client state on the other server when a change is notified", async () => {
    // B listens, so it caches the client's state: only the notification can tell it of the change.
    const onB = await revokedAfterUse(databaseUrl, a, b, admin.token);
    await waitFor(
      () =>
        onB.topics.listTopics({}).then(
          () => undefined,
          (error: unknown) => error,
        ),
      5_000,
      "the revoked token to be refused",
    );
    await expectCode(onB.topics.listTopics({}), Code.Unauthenticated);
    expect(b.count(cannotListen)).toBe(0);
  });
});
