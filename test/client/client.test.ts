import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientCredentials, createFastPubSubClient } from "../../src/client.ts";
import { createDatabasePool, type DatabasePool } from "../../src/db/pool.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { expectCode } from "../support/expect-code.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let db: DatabasePool;
let credentials: { id: string; secret: string };

beforeAll(async () => {
  server = await startTestServer({ FASTPUBSUB_AUTH_ENABLED: "true", FASTPUBSUB_AUTH_SECRET_KEY: "client-test-key-5b2e9c1d7a3f" });
  db = await createDatabasePool(server.databaseUrl, { maxPoolSize: 1 });
  credentials = await registerClient(db, { name: "client test", scopes: "topics:create topics:read", isActive: true });
});
afterAll(async () => {
  await db.end();
  await server.close();
});

/** How many CreateToken calls the server has answered, by outcome, from /metrics. */
async function tokenRequests(code: string) {
  const text = await (await fetch(new URL("/metrics", server.url))).text();
  const line = text
    .split("\n")
    .find(
      (candidate) =>
        candidate.startsWith("fastpubsub_rpc_requests_total{") &&
        candidate.includes('method="CreateToken"') &&
        candidate.includes(`code="${code}"`),
    );
  return line ? Number(line.split(" ").pop()) : 0;
}

describe("clientCredentials", () => {
  it("asks for one token however many calls wait for it, and the client calls with it", async () => {
    const before = await tokenRequests("ok");
    const token = clientCredentials(server.url, credentials.id, credentials.secret);
    const tokens = await Promise.all(Array.from({ length: 10 }, () => token()));
    expect(new Set(tokens).size).toBe(1);
    expect(await token()).toBe(tokens[0]);
    expect(await tokenRequests("ok")).toBe(before + 1);

    const api = createFastPubSubClient(server.url, { token });
    await api.topics.createTopic({ id: "client-test-topic" });
    expect((await api.topics.getTopic({ id: "client-test-topic" })).id).toBe("client-test-topic");
    expect(await tokenRequests("ok")).toBe(before + 1);
  });

  it("asks again after a refused request rather than keeping the failure", async () => {
    const before = await tokenRequests("unauthenticated");
    const token = clientCredentials(server.url, credentials.id, "not the secret");
    await expectCode(token(), Code.Unauthenticated);
    await expectCode(token(), Code.Unauthenticated);
    expect(await tokenRequests("unauthenticated")).toBe(before + 2);
  });

  it("is refused by the server without a token, or with one that is not a token", async () => {
    await expectCode(createFastPubSubClient(server.url).topics.listTopics({}), Code.Unauthenticated);
    await expectCode(createFastPubSubClient(server.url, { token: "abc" }).topics.listTopics({}), Code.Unauthenticated);
  });

  it("sends a token given as a string, over every protocol", async () => {
    const token = await clientCredentials(server.url, credentials.id, credentials.secret)();
    for (const protocol of ["connect", "grpc", "grpc-web"] as const) {
      const { topics } = createFastPubSubClient(server.url, { protocol, token });
      await topics.createTopic({ id: `client-test-${protocol}` });
      expect((await topics.getTopic({ id: `client-test-${protocol}` })).id).toBe(`client-test-${protocol}`);
    }
  });
});
