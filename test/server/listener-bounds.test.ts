import { once } from "node:events";
import http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Cut,
  connect,
  cutOf,
  idleAfterRequestClient,
  idleHttp2Client,
  type RawConnection,
  silentClient,
  silentClients,
  slowBodyClient,
  slowHeadersClient,
  stalledHttp2StreamClient,
} from "../support/abusive-clients.ts";
import { startServerProcess } from "../support/cli.ts";
import { uniqueId } from "../support/ids.ts";
import { createApi } from "../support/protocols.ts";
import { createTestDatabase, startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

// Small bounds, so that each abusive client is cut within seconds.
const headersMs = 1000;
const requestMs = 2000;
const keepAliveMs = 1000;
// Node checks the HTTP/1.1 bounds every 250 ms; the rest is room for a busy machine.
const slackMs = 1500;
// Node closes an idle HTTP/1.1 connection a second after the keep-alive time it announces.
const nodeKeepAliveMarginMs = 1000;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS: String(headersMs / 1000),
    FASTPUBSUB_API_REQUEST_TIMEOUT_SECONDS: String(requestMs / 1000),
    FASTPUBSUB_API_KEEPALIVE_TIMEOUT_SECONDS: String(keepAliveMs / 1000),
  });
});
afterAll(async () => {
  await server.close();
});

function expectCutAt(cut: Cut, boundMs: number) {
  // libuv's timers read a clock cached at the start of a loop turn, so they may fire a little early.
  expect(cut.ms).toBeGreaterThanOrEqual(boundMs - 50);
  expect(cut.ms).toBeLessThanOrEqual(boundMs + slackMs);
}

/** Asks GET /liveness, one request after another, until `abuse` settles; returns the abuse's outcome and every status. */
async function answeringDuring<T>(abuse: Promise<T>): Promise<{ outcome: T; statuses: number[] }> {
  let settled = false;
  const outcome = abuse.finally(() => {
    settled = true;
  });
  const statuses: number[] = [];
  while (!settled) {
    const response = await fetch(new URL("/liveness", server.url));
    await response.text();
    statuses.push(response.status);
    await sleep(50);
  }
  return { outcome: await outcome, statuses };
}

function expectAllAnswered(statuses: number[]) {
  expect(statuses.length).toBeGreaterThan(3);
  expect(statuses.filter((status) => status !== 200)).toEqual([]);
}

describe("HTTP/1.1 bounds", () => {
  it("cuts a client sending its headers a byte at a time at the headers bound, with a 408, while others get answers", async () => {
    const { outcome, statuses } = await answeringDuring(slowHeadersClient(server.url));
    expectCutAt(outcome, headersMs);
    expect(outcome.received).toMatch(/^HTTP\/1\.1 408 /);
    expectAllAnswered(statuses);
  });

  it("cuts a connection that never sends a byte at the headers bound", async () => {
    const cut = await silentClient(server.url);
    expectCutAt(cut, headersMs);
    expect(cut.received).toBe("");
  });

  it("cuts a request whose body stops arriving at the request bound, with a 408, while others get answers", async () => {
    const { outcome, statuses } = await answeringDuring(slowBodyClient(server.url, 100, '{"id":'));
    expectCutAt(outcome, requestMs);
    expect(outcome.received).toMatch(/^HTTP\/1\.1 408 /);
    expectAllAnswered(statuses);
  });

  it("cuts a 1 GB body trickled a byte at a time at the request bound, with a 408, while others get answers", async () => {
    const { outcome, statuses } = await answeringDuring(slowBodyClient(server.url, 1024 ** 3, "[", 200));
    expectCutAt(outcome, requestMs);
    expect(outcome.received).toMatch(/^HTTP\/1\.1 408 /);
    expectAllAnswered(statuses);
  });

  it("refuses a 1 GB body sent fast with 413 once it passes 16 MiB, and cuts the rest at the request bound", async () => {
    const connection = await connect(server.url);
    const { socket } = connection;
    socket.write(`POST /topics HTTP/1.1\r\nHost: fastpubsub\r\nContent-Type: application/json\r\nContent-Length: ${1024 ** 3}\r\n\r\n[`);
    const chunk = Buffer.alloc(1024 * 1024, " ");
    let sent = 0;
    let answered = false;
    socket.once("data", () => {
      answered = true;
    });
    while (!answered && !socket.destroyed) {
      if (!socket.write(chunk)) await new Promise((resolve) => socket.once("drain", resolve).once("close", resolve));
      sent += chunk.byteLength;
    }
    const cut = await cutOf(connection);
    expect(cut.received).toMatch(/^HTTP\/1\.1 413 /);
    expect(cut.ms).toBeLessThanOrEqual(requestMs + slackMs);
    expect(sent).toBeGreaterThan(16 * 1024 * 1024);
    expect(sent).toBeLessThan(1024 ** 3);
  });

  it("cuts two thousand silent connections at the headers bound while answering others", async () => {
    const { outcome, statuses } = await answeringDuring(silentClients(server.url, 2000));
    expect(outcome).toHaveLength(2000);
    const times = outcome.map((cut) => cut.ms);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(headersMs - 50);
    expect(Math.max(...times)).toBeLessThanOrEqual(headersMs + slackMs);
    expectAllAnswered(statuses);
  });

  it("cuts five hundred kept-alive connections left idle after a request at the keep-alive bound", async () => {
    const cuts = await Promise.all(Array.from({ length: 500 }, () => idleAfterRequestClient(server.url)));
    for (const cut of cuts) expect(cut.received).toBe("");
    const times = cuts.map((cut) => cut.ms);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(keepAliveMs - 50);
    expect(Math.max(...times)).toBeLessThanOrEqual(keepAliveMs + nodeKeepAliveMarginMs + slackMs);
  });

  it("keeps a connection alive between requests and says for how long", async () => {
    const { socket } = await connect(server.url);
    let received = "";
    socket.on("data", (chunk: string) => {
      received += chunk;
    });
    socket.write("GET /liveness HTTP/1.1\r\nHost: fastpubsub\r\n\r\nGET /liveness HTTP/1.1\r\nHost: fastpubsub\r\n\r\n");
    await waitFor(async () => (received.split('{"status":"alive"}').length === 3 ? true : undefined));
    expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(received).toContain("Keep-Alive: timeout=1");
    expect(socket.destroyed).toBe(false);
    socket.destroy();
  });
});

describe("HTTP/2 bounds", () => {
  it("closes a session that sends nothing after its preface at the keep-alive bound", async () => {
    expectCutAt(await idleHttp2Client(server.url), keepAliveMs);
  });

  it("closes a session that only pings at the keep-alive bound", async () => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const started = performance.now();
    const pings = setInterval(() => session.ping(() => {}), 100);
    await once(session, "close");
    clearInterval(pings);
    expectCutAt({ ms: performance.now() - started, received: "" }, keepAliveMs);
  });

  it("resets a stream whose request body never ends at the request bound, and the session goes on serving", async () => {
    const session = http2.connect(server.url);
    try {
      const cut = await stalledHttp2StreamClient(session);
      expectCutAt(cut, requestMs);
      expect(cut.received).toBe(String(http2.constants.NGHTTP2_CANCEL));
      const stream = session.request({ ":path": "/liveness" });
      const [headers] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
      stream.resume();
      expect(headers[":status"]).toBe(200);
    } finally {
      session.close();
    }
  });

  it("keeps a session open past every bound while its stream's answer waits on the client", async () => {
    // A stream window of zero stops the answer's body until the client widens it.
    const session = http2.connect(server.url, { settings: { initialWindowSize: 0 } });
    try {
      const stream = session.request({ ":path": "/liveness" });
      const [headers] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
      expect(headers[":status"]).toBe(200);
      let body = "";
      stream.setEncoding("utf8").on("data", (chunk: string) => {
        body += chunk;
      });
      await sleep(requestMs + keepAliveMs + slackMs);
      expect(session.closed).toBe(false);
      expect(stream.closed).toBe(false);
      session.settings({ initialWindowSize: 65_535 });
      await once(stream, "end");
      expect(body).toBe('{"status":"alive"}');
    } finally {
      session.close();
    }
  });

  it("answers Connect and gRPC calls over HTTP/2, also after the server closed their idle sessions", async () => {
    for (const protocol of ["grpc", "connect-binary"] as const) {
      const api = createApi(protocol, server.url);
      const id = uniqueId(protocol);
      await api.topics.createTopic({ id });
      await sleep(keepAliveMs + slackMs);
      expect(await api.topics.getTopic({ id })).toMatchObject({ id });
    }
  });
});

describe("the connection cap", () => {
  let capped: TestServer;
  beforeAll(async () => {
    capped = await startTestServer({ FASTPUBSUB_API_MAX_CONNECTIONS: "5", FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS: "30" });
  });
  afterAll(async () => {
    await capped.close();
  });

  /** Sends GET /liveness on a new connection and resolves with the answer's first line, or "" when the connection closes first. */
  async function statusLine(connection: RawConnection) {
    connection.socket.write("GET /liveness HTTP/1.1\r\nHost: fastpubsub\r\nConnection: close\r\n\r\n");
    return (await connection.closed).split("\r\n")[0];
  }

  it("closes connections beyond FASTPUBSUB_API_MAX_CONNECTIONS at once, and accepts new ones when others close", async () => {
    const held = await Promise.all(Array.from({ length: 5 }, () => connect(capped.url)));
    // An answer on each proves the server has accepted all five.
    for (const { socket } of held) socket.write("GET /liveness HTTP/1.1\r\nHost: fastpubsub\r\n\r\n");
    await Promise.all(held.map(({ socket }) => once(socket, "data")));

    const refused = await connect(capped.url);
    expect(await statusLine(refused)).toBe("");
    expect(performance.now() - refused.openedAt).toBeLessThan(1000);

    held[0]?.socket.destroy();
    const line = await waitFor(async () => (await statusLine(await connect(capped.url))) || undefined);
    expect(line).toBe("HTTP/1.1 200 OK");
    for (const { socket } of held) socket.destroy();
  });

  it("holds with several workers: each closes a connection beyond its cap at once", async () => {
    const workers = await startServerProcess({
      FASTPUBSUB_DATABASE_URL: await createTestDatabase(),
      FASTPUBSUB_API_NUM_WORKERS: "2",
      FASTPUBSUB_API_MAX_CONNECTIONS: "1",
    });
    const held: RawConnection[] = [];
    try {
      // Connections go to the workers in turn: at most two are answered, then one is closed.
      for (;;) {
        const connection = await connect(workers.url);
        connection.socket.write("GET /liveness HTTP/1.1\r\nHost: fastpubsub\r\n\r\n");
        const answered = await Promise.race([
          new Promise((resolve) => connection.socket.once("data", () => resolve(true))),
          connection.closed.then(() => false),
        ]);
        if (!answered) {
          expect(performance.now() - connection.openedAt).toBeLessThan(1000);
          break;
        }
        held.push(connection);
        expect(held.length).toBeLessThanOrEqual(2);
      }
    } finally {
      for (const { socket } of held) socket.destroy();
      expect(await workers.stop()).toBe(0);
    }
  });
});

describe("a request cut by a bound", () => {
  it("is logged and counted as 499, over REST, Connect and HTTP/2, with no failure logged", async () => {
    const cut = await startServerProcess({
      FASTPUBSUB_DATABASE_URL: await createTestDatabase(),
      FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS: "1",
      FASTPUBSUB_API_REQUEST_TIMEOUT_SECONDS: "1",
    });
    try {
      await slowBodyClient(cut.url, 100, '{"id":');
      const rpc = await connect(cut.url);
      rpc.socket.write(
        "POST /fastpubsub.v1.TopicService/CreateTopic HTTP/1.1\r\nHost: fastpubsub\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
      );
      await cutOf(rpc);
      const session = http2.connect(cut.url);
      session.on("error", () => {});
      await stalledHttp2StreamClient(session);
      session.close();
      const metrics = await (await fetch(new URL("/metrics", cut.url))).text();
      expect(metrics).toMatch(/http_requests_total\{method="POST",path="\/topics",status="499"\} 2/);
      expect(metrics).toMatch(/http_requests_total\{method="POST",path="\/fastpubsub.v1.TopicService\/CreateTopic",status="499"\} 1/);
    } finally {
      await cut.stop();
    }
    const lines = cut
      .log()
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.filter((line) => line.message === "request" && line.method === "POST").map((line) => line.status)).toEqual([
      499, 499, 499,
    ]);
    expect(lines.filter((line) => line.levelname === "ERROR")).toEqual([]);
  });
});
