import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFastPubSubClient } from "../../src/client.ts";
import { heartbeat } from "../../src/db/notifications.ts";
import { createDatabasePool } from "../../src/db/pool.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { freePort } from "../support/ports.ts";
import { createTcpProxy } from "../support/tcp-proxy.ts";
import { createFaultPostgres, type FaultPostgres } from "./support/postgres.ts";
import { startFaultServer } from "./support/processes.ts";
import { runAccounted } from "./support/summary.ts";
import { createWorkload } from "./support/workload.ts";

let postgres: FaultPostgres;
beforeAll(async () => {
  postgres = await createFaultPostgres();
});
afterAll(() => postgres?.destroy());

/** Resolves with the time a call with `token` to the server at `url` is first refused as unauthenticated. */
async function refusedAt(url: string, token: string, timeoutMs: number) {
  const api = createFastPubSubClient(url, { token });
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const refused = await api.topics.listTopics({}).then(
      () => false,
      (error: unknown) => ConnectError.from(error).code === Code.Unauthenticated,
    );
    if (refused) return performance.now();
    await sleep(100);
  }
  throw new Error(`the revoked token still worked ${timeoutMs} ms after the revocation`);
}

describe("the revocation listener cut off without a word", () => {
  it("a server whose LISTEN connection goes silent refuses a revoked token within the heartbeat deadline, and keeps serving", async () => {
    const auth = {
      FASTPUBSUB_AUTH_ENABLED: "true",
      FASTPUBSUB_AUTH_SECRET_KEY: randomBytes(32).toString("hex"),
      FASTPUBSUB_LOG_LEVEL: "warning",
    };
    const proxy = createTcpProxy(await freePort(), postgres.port);
    await proxy.start();
    const listenUrl = new URL(postgres.url);
    listenUrl.port = String(proxy.port);
    // Server A listens for revocations through the proxy; server B, which makes the changes, directly.
    const a = await startFaultServer({
      ...auth,
      FASTPUBSUB_DATABASE_URL: postgres.url,
      FASTPUBSUB_DATABASE_LISTEN_URL: listenUrl.toString(),
      FASTPUBSUB_API_PORT: String(await freePort()),
    });
    const b = await startFaultServer({ ...auth, FASTPUBSUB_DATABASE_URL: postgres.url, FASTPUBSUB_API_PORT: String(await freePort()) });
    const db = createDatabasePool(postgres.url, { maxPoolSize: 1 });
    const admin = await registerClient(db, { name: "admin", scopes: "*" });
    await db.end();
    const tokenOf = async (id: string, secret: string) =>
      (await createFastPubSubClient(a.url).auth.createToken({ clientId: id, clientSecret: secret })).accessToken;
    const adminApi = createFastPubSubClient(b.url, { token: await tokenOf(admin.id, admin.secret) });
    const workload = createWorkload({
      url: a.url,
      protocols: ["connect", "grpc"],
      publishers: 1,
      consumers: 1,
      batchSize: 20,
      publishPauseMs: 20,
      holdMs: 20,
      leaseMs: 60_000,
      token: await tokenOf(admin.id, admin.secret),
    });
    let revocation = { frozenAt: 0, updated: 0, deleted: 0 };
    const summary = await runAccounted(
      "LISTEN connection frozen, clients revoked",
      [a, b],
      workload,
      async () => {
        await workload.start();
        const updated = await adminApi.clients.createClient({ name: "to update", scopes: "topics:read" });
        const deleted = await adminApi.clients.createClient({ name: "to delete", scopes: "topics:read" });
        const tokens = { updated: await tokenOf(updated.id, updated.secret), deleted: await tokenOf(deleted.id, deleted.secret) };
        // Server A caches both clients' states.
        for (const token of Object.values(tokens)) await createFastPubSubClient(a.url, { token }).topics.listTopics({});
        await workload.confirmedAtLeast(200);

        proxy.freeze();
        const frozenAt = performance.now();
        await adminApi.clients.updateClient({ id: updated.id, name: "updated", scopes: "topics:read" });
        await adminApi.clients.deleteClient({ id: deleted.id });
        const bound = heartbeat.everyMs + heartbeat.deadlineMs + 2_000;
        const [updatedAt, deletedAt] = await Promise.all([
          refusedAt(a.url, tokens.updated, bound),
          refusedAt(a.url, tokens.deleted, bound),
        ]);
        revocation = { frozenAt, updated: updatedAt - frozenAt, deleted: deletedAt - frozenAt };
        await workload.confirmedAtLeast(workload.confirmed() + 200);
        await workload.drain();
      },
      () => proxy.close(),
    );
    console.log(
      `faults | LISTEN connection frozen | revoked tokens refused ${(revocation.updated / 1000).toFixed(2)} s (updated client) and ` +
        `${(revocation.deleted / 1000).toFixed(2)} s (deleted client) after the freeze; heartbeat every ${heartbeat.everyMs / 1000} s, deadline ${heartbeat.deadlineMs / 1000} s`,
    );
    expect(summary.unavailable + summary.connectionErrors).toBe(0);
  });
});
