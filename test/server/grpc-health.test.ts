import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.ts";
import { loadConfig } from "../../src/config/config.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningServer, startServer } from "../../src/server/server.ts";
import { expectCode } from "../support/expect-code.ts";
import { freePort } from "../support/ports.ts";
import { createApi } from "../support/protocols.ts";
import { createTestDatabase, startTestServer, type TestServer } from "../support/server.ts";
import { createTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

const apiServices = [
  "fastpubsub.v1.AuthService",
  "fastpubsub.v1.ClientService",
  "fastpubsub.v1.SubscriptionService",
  "fastpubsub.v1.TopicService",
];

/** A client of the health service over gRPC (HTTP/2 without TLS), as a Kubernetes `grpc:` probe calls it. */
function healthClient(url: string) {
  return createClient(Health, createGrpcTransport({ baseUrl: url }));
}

/** Reads a Watch of `service` until `done` says so, then cancels it, and returns the statuses it has sent. */
async function watchUntil(url: string, service: string, done: (statuses: Status[]) => boolean) {
  const statuses: Status[] = [];
  // Leaving the loop stops reading but sends no cancel; an abort does.
  const watching = new AbortController();
  for await (const answer of healthClient(url).watch({ service }, { signal: watching.signal })) {
    statuses.push(answer.status);
    if (done(statuses)) break;
  }
  watching.abort();
  return statuses;
}

describe("the gRPC health service", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  it("says SERVING for the server and for each API service while the database answers", async () => {
    const health = healthClient(server.url);
    for (const service of ["", ...apiServices]) {
      expect((await health.check({ service })).status).toBe(Status.SERVING);
    }
    const listed = await health.list({});
    expect(Object.keys(listed.statuses).sort()).toEqual(["", ...apiServices]);
    expect(Object.values(listed.statuses).map((answer) => answer.status)).toEqual(Array(5).fill(Status.SERVING));
  });

  it("answers a Check of an unknown service with not_found", async () => {
    await expectCode(healthClient(server.url).check({ service: "fastpubsub.v1.NoSuchService" }), Code.NotFound);
  });

  it("sends a Watch the current status at once", async () => {
    expect(await watchUntil(server.url, "", (statuses) => statuses.length === 1)).toEqual([Status.SERVING]);
    expect(await watchUntil(server.url, "fastpubsub.v1.TopicService", (statuses) => statuses.length === 1)).toEqual([Status.SERVING]);
  });

  it("sends a Watch of an unknown service SERVICE_UNKNOWN", async () => {
    expect(await watchUntil(server.url, "nope", (statuses) => statuses.length === 1)).toEqual([Status.SERVICE_UNKNOWN]);
  });
});

describe("the gRPC health service of a server whose database does not answer", () => {
  let proxy: TcpProxy;
  let server: RunningServer;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= server.close();
    return closing;
  };
  beforeAll(async () => {
    const database = new URL(await createTestDatabase());
    proxy = createTcpProxy(await freePort(), Number(database.port || 5432));
    const behindProxy = new URL(database);
    behindProxy.port = String(proxy.port);
    const config = loadConfig({
      FASTPUBSUB_DATABASE_URL: behindProxy.toString(),
      FASTPUBSUB_API_HOST: "127.0.0.1",
      FASTPUBSUB_API_PORT: "0",
      FASTPUBSUB_LOG_LEVEL: "critical",
    });
    server = await startServer(config, createLogger({ level: "critical", format: "%(message)s" }));
  });
  afterAll(async () => {
    await close();
    await proxy.close();
  });

  it("says NOT_SERVING, and a Watch is told when the database is back, then when the server shuts down", async () => {
    const health = healthClient(server.url);
    expect((await health.check({ service: "" })).status).toBe(Status.NOT_SERVING);
    expect((await health.check({ service: "fastpubsub.v1.TopicService" })).status).toBe(Status.NOT_SERVING);
    // The API's own calls are refused meanwhile; health is not one of them.
    await expectCode(createApi("grpc", server.url).topics.listTopics({}), Code.Unavailable);

    const statuses: Status[] = [];
    let sawServing: () => void = () => {};
    const serving = new Promise<void>((resolve) => {
      sawServing = resolve;
    });
    const watched = (async () => {
      for await (const answer of health.watch({ service: "" })) {
        statuses.push(answer.status);
        if (answer.status === Status.SERVING) sawServing();
      }
    })();
    await proxy.start();
    await serving;
    expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
    await close();
    // The Watch ends when the server shuts down, NOT_SERVING last; it sends changes only.
    await watched;
    expect(statuses[0]).toBe(Status.NOT_SERVING);
    expect(statuses).toContain(Status.SERVING);
    expect(statuses.at(-1)).toBe(Status.NOT_SERVING);
    expect(statuses.filter((status, n) => status === statuses[n - 1])).toEqual([]);
  });
});

describe("the gRPC health service with authentication enabled", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      FASTPUBSUB_AUTH_ENABLED: "true",
      FASTPUBSUB_AUTH_SECRET_KEY: "test-key-9c4e2a7b1d8f3e6a5c0b9d2e7f1a4c8b",
    });
  });
  afterAll(async () => {
    await server.close();
  });

  it("needs no token, while the API's RPCs still do", async () => {
    expect((await healthClient(server.url).check({ service: "" })).status).toBe(Status.SERVING);
    expect(await watchUntil(server.url, "", (statuses) => statuses.length === 1)).toEqual([Status.SERVING]);
    await expectCode(createApi("grpc", server.url).topics.listTopics({}), Code.Unauthenticated);
  });
});
