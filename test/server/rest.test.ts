import http2 from "node:http2";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { query } from "../support/db.ts";
import { call as callHttp } from "../support/http.ts";
import { uniqueId } from "../support/ids.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

/** Sends one request to the server and returns its status, headers and body; JSON bodies are parsed. */
const call = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  callHttp(server.url, method, path, body, headers);

const rfc3339Utc = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

describe("the REST paths", () => {
  it("create a topic with 201 and the seed's body", async () => {
    const id = uniqueId("rest");
    const created = await call("POST", "/topics", { id });
    expect(created.status).toBe(201);
    expect(created.headers.get("content-type")).toBe("application/json");
    expect(Object.keys(created.json as object).sort()).toEqual(["created_at", "id"]);
    expect(created.json).toMatchObject({ id, created_at: expect.stringMatching(rfc3339Utc) });
    expect(await call("GET", `/topics/${id}`)).toMatchObject({ status: 200, json: created.json });
    const list = await call("GET", "/topics?offset=0&limit=100");
    expect(list.status).toBe(200);
    expect(Object.keys(list.json as object)).toEqual(["data"]);
    expect((list.json as { data: unknown[] }).data).toContainEqual(created.json);
  });

  it("answer 409, 404 and 204 with the seed's bodies", async () => {
    const id = uniqueId("rest");
    await call("POST", "/topics", { id });
    expect(await call("POST", "/topics", { id })).toMatchObject({ status: 409, json: { detail: "This topic already exists" } });
    expect(await call("GET", `/topics/${id}-x`)).toMatchObject({ status: 404, json: { detail: "Topic not found" } });
    expect(await call("DELETE", `/topics/${id}`)).toMatchObject({ status: 204, text: "" });
    expect(await call("DELETE", `/topics/${id}`)).toMatchObject({ status: 404, json: { detail: "Topic not found" } });
  });

  it("create a subscription with the defaults and a null filter in the body", async () => {
    const topicId = uniqueId("rest");
    await call("POST", "/topics", { id: topicId });
    const id = uniqueId("rest-sub");
    const created = await call("POST", "/subscriptions", { id, topic_id: topicId });
    expect(created.status).toBe(201);
    expect(created.json).toEqual({
      id,
      topic_id: topicId,
      filter: null,
      max_delivery_attempts: 5,
      backoff_min_seconds: 5,
      backoff_max_seconds: 300,
      created_at: expect.stringMatching(rfc3339Utc),
      ack_deadline_seconds: 60,
    });
    expect(await call("GET", `/subscriptions/${id}`)).toMatchObject({ status: 200, json: created.json });
    const filtered = await call("POST", "/subscriptions", {
      id: `${id}-f`,
      topic_id: topicId,
      filter: { country: ["BR", "US"], premium: [true], tier: [1] },
      max_delivery_attempts: 3,
      backoff_min_seconds: 1,
      backoff_max_seconds: 10,
      ack_deadline_seconds: 600,
    });
    expect(filtered).toMatchObject({
      status: 201,
      json: {
        filter: { country: ["BR", "US"], premium: [true], tier: [1] },
        max_delivery_attempts: 3,
        backoff_min_seconds: 1,
        backoff_max_seconds: 10,
        ack_deadline_seconds: 600,
      },
    });
    expect(await call("POST", "/subscriptions", { id: `${id}-x`, topic_id: `${topicId}-x` })).toMatchObject({
      status: 404,
      json: { detail: "Topic not found" },
    });
    expect(await call("POST", "/subscriptions", { id, topic_id: topicId })).toMatchObject({
      status: 409,
      json: { detail: "This subscription already exists" },
    });
    expect(await call("DELETE", `/subscriptions/${id}`)).toMatchObject({ status: 204, text: "" });
    expect(await call("GET", `/subscriptions/${id}`)).toMatchObject({ status: 404, json: { detail: "Subscription not found" } });
  });

  it.each<[string, string, string, unknown]>([
    ["a body that is not JSON", "POST", "/topics", "{id:"],
    ["a body that is an array", "POST", "/topics", "[]"],
    ["a missing body", "POST", "/topics", undefined],
    ["a missing id", "POST", "/topics", {}],
    ["a numeric id", "POST", "/topics", { id: 12 }],
    ["an id with a space", "POST", "/topics", { id: "a b" }],
    ["a limit that is not a number", "GET", "/topics?limit=ten", undefined],
    ["a limit of 0", "GET", "/topics?limit=0", undefined],
    ["a limit of 101", "GET", "/topics?limit=101", undefined],
    ["a negative offset", "GET", "/topics?offset=-1", undefined],
    ["a fractional offset", "GET", "/subscriptions?offset=1.5", undefined],
    ["a subscription without topic_id", "POST", "/subscriptions", { id: "s" }],
    ["a filter with a scalar value", "POST", "/subscriptions", { id: "s", topic_id: "t", filter: { a: "b" } }],
    ["max_delivery_attempts of 0", "POST", "/subscriptions", { id: "s", topic_id: "t", max_delivery_attempts: 0 }],
    ["max_delivery_attempts as text", "POST", "/subscriptions", { id: "s", topic_id: "t", max_delivery_attempts: "many" }],
    ["ack_deadline_seconds of 601", "POST", "/subscriptions", { id: "s", topic_id: "t", ack_deadline_seconds: 601 }],
    ["ack_deadline_seconds of 0 in the query", "POST", "/subscriptions?ack_deadline_seconds=0", { id: "s", topic_id: "t" }],
  ])("refuse %s with 422 and a detail", async (_, method, path, body) => {
    const answer = await call(method, path, body);
    expect(answer.status).toBe(422);
    expect(answer.json).toEqual({ detail: expect.any(String) });
    expect((answer.json as { detail: string }).detail.length).toBeGreaterThan(0);
  });

  it("ignore unknown fields and query parameters, as the seed does", async () => {
    const id = uniqueId("extra");
    expect(await call("POST", "/topics", { id, colour: "blue" })).toMatchObject({ status: 201, json: { id } });
    expect((await call("GET", "/topics?limit=1&sort=desc")).status).toBe(200);
  });

  it("read a body that starts with a byte-order mark", async () => {
    const id = uniqueId("bom");
    expect(await call("POST", "/topics", `\uFEFF${JSON.stringify({ id })}`)).toMatchObject({ status: 201, json: { id } });
  });

  it("take ids with dots and percent-encoded characters in the path", async () => {
    const id = uniqueId("a.b_c");
    await call("POST", "/topics", { id });
    expect(await call("GET", `/topics/${encodeURIComponent(id)}`)).toMatchObject({ status: 200, json: { id } });
    expect(await call("GET", "/topics/a%2Fb")).toMatchObject({ status: 404, json: { detail: "Topic not found" } });
    expect((await call("GET", "/topics/")).status).toBe(200);
  });

  it("answer 404 and 405 for paths and methods that do not exist", async () => {
    expect(await call("GET", "/nowhere")).toMatchObject({ status: 404, json: { detail: "Not Found" } });
    expect(await call("GET", "/topics/a/b/c")).toMatchObject({ status: 404, json: { detail: "Not Found" } });
    expect(await call("PATCH", "/topics")).toMatchObject({ status: 405, json: { detail: "Method Not Allowed" } });
    expect(await call("PUT", "/subscriptions/x")).toMatchObject({ status: 405, json: { detail: "Method Not Allowed" } });
  });

  it("answer the probes", async () => {
    expect(await call("GET", "/liveness")).toMatchObject({ status: 200, json: { status: "alive" } });
    expect(await call("GET", "/readiness")).toMatchObject({ status: 200, json: { status: "ready" } });
  });

  it("are served over HTTP/2 without TLS as well", async () => {
    const session = http2.connect(server.url);
    try {
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ":method": "GET", ":path": "/liveness" });
        let status = 0;
        let body = "";
        stream.on("response", (headers) => {
          status = Number(headers[":status"]);
        });
        stream.setEncoding("utf8");
        stream.on("data", (chunk: string) => {
          body += chunk;
        });
        stream.on("end", () => resolve({ status, body }));
        stream.on("error", reject);
        stream.end();
      });
      expect(answer).toEqual({ status: 200, body: '{"status":"alive"}' });
    } finally {
      session.close();
    }
  });
});

describe("refused statements", () => {
  it("do not cost database connections", async () => {
    const client = new pg.Client({ connectionString: server.databaseUrl });
    await client.connect();
    const name = new URL(server.databaseUrl).pathname.slice(1);
    // pg_stat_database.sessions counts the connections ever opened to the database.
    const sessions = async () =>
      Number(
        (await client.query<{ sessions: string }>("SELECT sessions FROM pg_stat_database WHERE datname = $1", [name])).rows[0]?.sessions,
      );
    const refusals = () =>
      Promise.all([
        call("GET", `/topics/${uniqueId("none")}`),
        call("GET", `/subscriptions/${uniqueId("none")}/messages?consumer_id=w`),
        call("POST", `/topics/${uniqueId("none")}/messages`, [{ a: 1 }]),
        call("POST", "/topics", { id: "taken" }),
      ]);
    await refusals();
    await client.query("SELECT pg_stat_clear_snapshot()");
    const before = await sessions();
    for (let round = 0; round < 10; round++) {
      expect((await refusals()).map((answer) => answer.status)).toEqual([404, 404, 404, 409]);
    }
    await client.query("SELECT pg_stat_clear_snapshot()");
    const after = await sessions();
    await client.end();
    expect(after - before).toBeLessThanOrEqual(2);
  });
});

describe("Connect JSON", () => {
  it("uses the proto field names and always writes every field", async () => {
    const topicId = uniqueId("cj");
    await call("POST", "/topics", { id: topicId });
    const answer = await call("POST", "/fastpubsub.v1.SubscriptionService/CreateSubscription", { id: uniqueId("cj"), topic_id: topicId });
    expect(answer.status).toBe(200);
    expect(Object.keys(answer.json as object).sort()).toEqual([
      "ack_deadline_seconds",
      "backoff_max_seconds",
      "backoff_min_seconds",
      "created_at",
      "filter",
      "id",
      "max_delivery_attempts",
      "topic_id",
    ]);
    expect(answer.json).toMatchObject({ filter: null, topic_id: topicId });
  });

  it("answers errors in the Connect error format", async () => {
    const answer = await call("POST", "/fastpubsub.v1.TopicService/GetTopic", { id: uniqueId("none") });
    expect(answer).toMatchObject({ status: 404, json: { code: "not_found", message: "Topic not found" } });
    const invalid = await call("POST", "/fastpubsub.v1.TopicService/CreateTopic", { id: "no good" });
    expect(invalid).toMatchObject({ status: 400, json: { code: "invalid_argument" } });
  });
});

describe("a server whose database goes away", () => {
  it("answers 503 on readiness and on calls, and recovers", async () => {
    const own = await startTestServer();
    try {
      const name = new URL(own.databaseUrl).pathname.slice(1);
      const adminUrl = inject("adminUrl");
      await query(adminUrl, `ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      try {
        await query(adminUrl, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name]);
        const readiness = await fetch(new URL("/readiness", own.url));
        expect(readiness.status).toBe(503);
        expect(await readiness.json()).toEqual({ detail: "database is down" });
        const topics = await fetch(new URL("/topics", own.url));
        expect(topics.status).toBe(503);
        expect(await topics.json()).toEqual({ detail: "database is unavailable" });
      } finally {
        await query(adminUrl, `ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      }
      expect((await fetch(new URL("/readiness", own.url))).status).toBe(200);
    } finally {
      await own.close();
    }
  });
});

describe("CORS", () => {
  it("lets the configured origins call from a browser, and no other", async () => {
    const own = await startTestServer({ FASTPUBSUB_API_CORS_ORIGINS: "https://app.example, https://admin.example" });
    try {
      const preflight = await fetch(new URL("/fastpubsub.v1.TopicService/ListTopics", own.url), {
        method: "OPTIONS",
        headers: {
          origin: "https://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type",
        },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example");
      expect(preflight.headers.get("access-control-allow-methods")).toContain("POST");
      expect(preflight.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
      const allowed = await fetch(new URL("/topics", own.url), { headers: { origin: "https://admin.example" } });
      expect(allowed.headers.get("access-control-allow-origin")).toBe("https://admin.example");
      expect(allowed.headers.get("access-control-expose-headers")?.toLowerCase()).toContain("www-authenticate");
      const other = await fetch(new URL("/topics", own.url), { headers: { origin: "https://evil.example" } });
      expect(other.status).toBe(200);
      expect(other.headers.get("access-control-allow-origin")).toBeNull();
    } finally {
      await own.close();
    }
  });
});
