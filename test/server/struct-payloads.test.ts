import http2 from "node:http2";
import { fromJson, type JsonObject, type JsonValue, toBinary } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PublishMessagesRequestSchema } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { createFastPubSubClient } from "../../src/client.ts";
import { databaseChecksum } from "../support/db.ts";
import { uniqueId } from "../support/ids.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startQuietServer, startTestServer, type TestServer } from "../support/server.ts";

// No background job may change a table while a test compares checksums.
let server: TestServer;
let db: pg.Client;
beforeAll(async () => {
  ({ server, db } = await startQuietServer());
});
afterAll(async () => {
  await db.end();
  await server.close();
});

const payloads: JsonObject[] = [
  {},
  { null: null, yes: true, no: false, empty: {}, list: [] },
  { zero: 0, negativeZero: -0, large: 1e300, small: -2.5e-300, integer: 9007199254740991, fraction: 0.1 },
  { nested: { a: [1, "two", { three: [null, [[]], { four: {} }] }] }, array: [true, false, null, 1.5, "x", [], {}] },
  { "zażółć gęślą jaźń": "日本語 — 🎉", "": "", "ключ 🔑": ["é", "\u00ff", "\u{10ffff}"], 'quote"and\\backslash': "\t\n" },
  { long: "lorem ipsum ".repeat(200), longUnicode: "żółw ".repeat(100) },
];
// What a payload is once stored: PostgreSQL keeps it as JSON text, where -0 is 0.
const stored = (payload: JsonValue) => JSON.parse(JSON.stringify(payload)) as JsonValue;
const sorted = (values: JsonValue[]) => values.map((value) => JSON.stringify(value)).sort();

/**
 * The ways a payload can travel: each protocol with the generated client (REST with its own), and
 * fastpubsub/client over each binary protocol (once with compressed answers).
 */
const ways = [...protocols, "client-connect", "client-grpc", "client-grpc-web", "client-grpc-compressed"] as const;
type Way = (typeof ways)[number];

function apiOf(way: Way): Pick<Api, "topics" | "subscriptions"> {
  if (way === "client-grpc-compressed") return createFastPubSubClient(server.url, { protocol: "grpc", compression: true });
  if (way.startsWith("client-")) {
    return createFastPubSubClient(server.url, { protocol: way.slice("client-".length) as "connect" | "grpc" | "grpc-web" });
  }
  return createApi(way as (typeof protocols)[number], server.url);
}

describe.each(ways)("payloads of every JSON kind published over %s", (publisher) => {
  it("come back as published over every protocol", async () => {
    const topicId = uniqueId("kinds");
    const api = apiOf(publisher);
    await api.topics.createTopic({ id: topicId });
    for (const consumer of ways) {
      await api.subscriptions.createSubscription({ id: `${topicId}-${consumer}`, topicId });
    }
    await api.topics.publishMessages({ topicId, messages: payloads });
    for (const consumer of ways) {
      const { data } = await apiOf(consumer).subscriptions.consumeMessages({
        subscriptionId: `${topicId}-${consumer}`,
        consumerId: "worker",
        batchSize: 100,
      });
      expect(sorted(data.map((message) => message.payload ?? null)), `consumed over ${consumer}`).toEqual(sorted(payloads.map(stored)));
    }
  });
});

describe("a payload that is not a Struct in a binary request", () => {
  const path = "/fastpubsub.v1.TopicService/PublishMessages";
  const frame = (message: Uint8Array) => new Uint8Array([0, 0, 0, 0, message.length, ...message]);
  const struct = (payload: JsonObject) => toBinary(StructSchema, fromJson(StructSchema, payload));
  let topicId: string;
  beforeAll(async () => {
    topicId = uniqueId("malformed");
    const api = createApi("connect-json", server.url);
    await api.topics.createTopic({ id: topicId });
    await api.subscriptions.createSubscription({ id: topicId, topicId });
  });

  /** A PublishMessagesRequest, written by hand: topic_id (1), then each payload's bytes as a message of field 2. */
  function request(payloads: Uint8Array[]) {
    const head = toBinary(PublishMessagesRequestSchema, { $typeName: "fastpubsub.v1.PublishMessagesRequest", topicId, messages: [] });
    const parts: number[] = [...head];
    for (const payload of payloads) parts.push(0x12, payload.length, ...payload);
    return new Uint8Array(parts);
  }

  // The second payload: a map entry cut short, and a Value with no kind.
  const cases = [
    { bytes: new Uint8Array([0x0a, 0x05, 0x0a, 0x01, 0x61]), message: /^messages\[1\]: invalid google\.protobuf\.Struct: premature EOF$/ },
    {
      bytes: new Uint8Array([0x0a, 0x05, 0x0a, 0x01, 0x61, 0x12, 0x00]),
      message: 'messages[1]: invalid google.protobuf.Struct: google.protobuf.Value must have a value (at ["a"])',
    },
  ];

  it.each(cases)("is invalid_argument over Connect, and nothing is stored ($message)", async ({ bytes, message }) => {
    const before = await databaseChecksum(db);
    const answer = await fetch(new URL(path, server.url), {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: request([struct({ ok: 1 }), bytes, struct({ ok: 2 })]),
    });
    expect(answer.status).toBe(400);
    const error = (await answer.json()) as { code: string; message: string };
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toMatch(message);
    expect(await databaseChecksum(db)).toEqual(before);
  });

  it.each(cases)("is invalid_argument over gRPC-Web, and nothing is stored ($message)", async ({ bytes }) => {
    const before = await databaseChecksum(db);
    const answer = await fetch(new URL(path, server.url), {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: frame(request([struct({ ok: 1 }), bytes])),
    });
    const text = new TextDecoder().decode(await answer.arrayBuffer());
    expect(answer.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/.exec(text)?.[1]).toBe("3");
    expect(decodeURIComponent(answer.headers.get("grpc-message") ?? /grpc-message:\s*(.*)/.exec(text)?.[1] ?? "")).toMatch(
      /^messages\[1\]: /,
    );
    expect(await databaseChecksum(db)).toEqual(before);
  });

  it.each(cases)("is invalid_argument over gRPC, and nothing is stored ($message)", async ({ bytes }) => {
    const before = await databaseChecksum(db);
    const session = http2.connect(server.url);
    try {
      const status = await new Promise<{ status?: string; message?: string }>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
        const found: { status?: string; message?: string } = {};
        const note = (headers: http2.IncomingHttpHeaders) => {
          found.status ??= headers["grpc-status"] as string | undefined;
          found.message ??= headers["grpc-message"] as string | undefined;
        };
        stream.on("response", note);
        stream.on("trailers", note);
        stream.on("close", () => resolve(found));
        stream.on("error", reject);
        stream.resume();
        stream.end(frame(request([bytes])));
      });
      expect(status.status).toBe("3");
      expect(decodeURIComponent(status.message ?? "")).toMatch(/^messages\[0\]: /);
    } finally {
      session.close();
    }
    expect(await databaseChecksum(db)).toEqual(before);
  });
});

describe("an unreadable payload in a binary request", () => {
  it("is refused after the interceptors before validation: counted, and unauthenticated without a token", async () => {
    const guarded = await startTestServer({ FASTPUBSUB_AUTH_ENABLED: "true", FASTPUBSUB_AUTH_SECRET_KEY: "a".repeat(64) });
    try {
      const topicId = uniqueId("unread");
      // A Struct whose map entry is cut short.
      const body = new Uint8Array([0x0a, topicId.length, ...new TextEncoder().encode(topicId), 0x12, 0x03, 0x0a, 0x05, 0x0a]);
      const answer = await fetch(new URL("/fastpubsub.v1.TopicService/PublishMessages", guarded.url), {
        method: "POST",
        headers: { "content-type": "application/proto" },
        body,
      });
      expect(answer.status).toBe(401);
      expect(((await answer.json()) as { code: string }).code).toBe("unauthenticated");
      const metrics = await (await fetch(new URL("/metrics", guarded.url))).text();
      expect(metrics).toMatch(/fastpubsub_rpc_requests_total\{[^}]*method="PublishMessages"[^}]*code="unauthenticated"[^}]*\} 1/);
    } finally {
      await guarded.close();
    }
  });
});
