import http2 from "node:http2";
import { create, fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type pg from "pg";
import { Client } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { maxJsonDepth } from "../../src/server/interceptors/unstorable-values.ts";
import { databaseChecksum } from "../support/db.ts";
import { expectCode } from "../support/expect-code.ts";
import { send } from "../support/http.ts";
import { uniqueId } from "../support/ids.ts";
import { consume } from "../support/messages.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startQuietServer, type TestServer } from "../support/server.ts";

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

/** Expects `call` to be refused as invalid_argument with a message matching `message`, and no table to change. */
async function expectRefused(call: () => Promise<unknown>, message: string | RegExp) {
  const before = await databaseChecksum(db);
  const error = await expectCode(call(), Code.InvalidArgument);
  expect(error.rawMessage).toMatch(message);
  expect(await databaseChecksum(db)).toEqual(before);
}

describe.each(protocols)("U+0000, over %s", (protocol) => {
  let api: Api;
  let topicId: string;
  let subscriptionId: string;
  beforeAll(async () => {
    api = createApi(protocol, server.url);
    topicId = uniqueId("nul");
    subscriptionId = uniqueId("nul-sub");
    await api.topics.createTopic({ id: topicId });
    await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }] });
  });

  const texts = ["\0", "a\0b"];

  it.each(texts)("is refused in a path id (%j), naming the field", async (text) => {
    await expectRefused(() => api.topics.getTopic({ id: text }), /^id must not contain /);
    await expectRefused(() => api.topics.deleteTopic({ id: `${topicId}${text}` }), /^id must not contain U\+0000$/);
    await expectRefused(() => api.subscriptions.getSubscription({ id: text }), /^id must not contain /);
    await expectRefused(() => api.subscriptions.getSubscriptionMetrics({ subscriptionId: text }), /^subscription_id must not contain /);
    await expectRefused(() => api.topics.publishMessages({ topicId: text, messages: [{ n: 2 }] }), /^topic_id must not contain /);
  });

  it.each(texts)("is refused in a consumer id (%j), and nothing is delivered", async (text) => {
    await expectRefused(() => api.subscriptions.consumeMessages({ subscriptionId, consumerId: text }), /^consumer_id must not contain /);
  });

  it.each(texts)("is refused in a filter's values and keys (%j), and no subscription is made", async (text) => {
    const create = (filter: JsonObject) =>
      api.subscriptions.createSubscription({ id: uniqueId("nul-filter"), topicId, filter: fromJson(ValueSchema, filter) });
    await expectRefused(() => create({ country: ["BR", text] }), /^filter\["country"\]\[1\] must not contain /);
    await expectRefused(() => create({ [`c${text}`]: ["BR"] }), `filter key ${JSON.stringify(`c${text}`)} must not contain `);
  });

  it.each(texts)("is refused in a client's name and scopes (%j), and no client is made", async (text) => {
    await expectRefused(() => api.clients.createClient({ name: `worker ${text}`, scopes: "*" }), /^name must not contain /);
    await expectRefused(() => api.clients.createClient({ name: "worker", scopes: `topics:read:${text}` }), /^scopes must not contain /);
  });

  it("publishes a payload that holds U+0000 and gives it back unchanged", async () => {
    const id = uniqueId("nul-payload");
    await api.topics.createTopic({ id });
    await api.subscriptions.createSubscription({ id, topicId: id });
    const payload = { text: "a\0b", "key\0": ["\0"], nested: { deep: "\0" } };
    await api.topics.publishMessages({ topicId: id, messages: [payload] });
    expect((await consume(api, id)).map((message) => message.payload)).toEqual([payload]);
  });

  it("routes payloads that hold U+0000 through filters: such a value equals no filter value", async () => {
    const id = uniqueId("nul-route");
    await api.topics.createTopic({ id });
    const filtered = async (name: string, filter: JsonObject) => {
      const subscription = `${id}-${name}`;
      await api.subscriptions.createSubscription({ id: subscription, topicId: id, filter: fromJson(ValueSchema, filter) });
      return subscription;
    };
    const byA = await filtered("a", { a: ["x"] });
    const byB = await filtered("b", { b: ["1", 2] });
    const payloads: JsonObject[] = [{ a: "x\0", b: "1" }, { a: "x", b: 2 }, { b: "\0" }, { a: "x", c: "\0" }, { a: "x\\u0000" }];
    await api.topics.publishMessages({ topicId: id, messages: payloads });
    expect((await consume(api, byA)).map((message) => message.payload)).toEqual([payloads[1], payloads[2], payloads[3]]);
    expect((await consume(api, byB)).map((message) => message.payload)).toEqual([payloads[0], payloads[1], payloads[3], payloads[4]]);
  });
});

// Only JSON can carry a lone surrogate: URLs and protobuf's binary strings are UTF-8,
// which has no way to write one, and the Connect client writes U+FFFD instead.
const jsonProtocols = ["rest", "connect-json"] as const;

describe.each(jsonProtocols)("lone surrogates in a JSON body, over %s", (protocol) => {
  let topicId: string;
  let subscriptionId: string;
  beforeAll(async () => {
    const api = createApi(protocol, server.url);
    topicId = uniqueId("lone");
    subscriptionId = uniqueId("lone-sub");
    await api.topics.createTopic({ id: topicId });
    await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }] });
  });

  /** Sends an RPC's request as JSON text (REST at `restPath`), expects it refused as invalid input with no table changed, and returns the reason. */
  async function refusal(rpc: string, restPath: string, request: JsonObject) {
    const before = await databaseChecksum(db);
    const answer =
      protocol === "rest"
        ? await send(server.url, "POST", restPath, JSON.stringify(request))
        : await send(server.url, "POST", `/fastpubsub.v1.${rpc}`, JSON.stringify(request));
    expect(answer.status).toBe(protocol === "rest" ? 422 : 400);
    expect(await databaseChecksum(db)).toEqual(before);
    const body = JSON.parse(answer.text) as { detail?: string; message?: string };
    return body.detail ?? body.message;
  }

  it.each(["\ud800", "a\udc00b"])("are refused in a filter's values and keys (%j)", async (text) => {
    const subscription = (filter: JsonObject) => ({ id: uniqueId("lone-filter"), topic_id: topicId, filter });
    const rpc = "SubscriptionService/CreateSubscription";
    const unit = text.includes("\ud800") ? "U+D800" : "U+DC00";
    expect(await refusal(rpc, "/subscriptions", subscription({ country: ["BR", text] }))).toBe(
      `filter["country"][1] must not contain a lone surrogate (${unit})`,
    );
    expect(await refusal(rpc, "/subscriptions", subscription({ [`c${text}`]: ["BR"] }))).toBe(
      `filter key ${JSON.stringify(`c${text}`)} must not contain a lone surrogate (${unit})`,
    );
  });

  it("are refused in string fields, naming the field", async () => {
    const rpc = "ClientService/CreateClient";
    expect(await refusal(rpc, "/clients", { name: "worker \ud800", scopes: "*" })).toMatch(/\bname\b/);
    expect(await refusal(rpc, "/clients", { name: "worker", scopes: "topics:read:\udc00" })).toMatch(/\bscopes\b/);
    if (protocol === "connect-json") {
      const consume = { subscription_id: subscriptionId, consumer_id: "\ud800" };
      expect(await refusal("SubscriptionService/ConsumeMessages", "", consume)).toMatch(/\bconsumer_id\b/);
    }
  });
});

describe.each(jsonProtocols)("payloads with escapes PostgreSQL's text has no character for, over %s", (protocol) => {
  it("come back byte for byte as they were published", async () => {
    const id = uniqueId("escapes");
    const api = createApi(protocol, server.url);
    await api.topics.createTopic({ id });
    await api.subscriptions.createSubscription({ id, topicId: id });
    // As JSON.stringify writes them, so that equal text means equal bytes.
    const payload = '{"nul":"a\\u0000b","lone":"\\ud800","low":"x\\udc00","pair":"😀","key\\u0000":1}';
    const published =
      protocol === "rest"
        ? await send(server.url, "POST", `/topics/${id}/messages`, `[${payload}]`)
        : await send(server.url, "POST", "/fastpubsub.v1.TopicService/PublishMessages", `{"topic_id":"${id}","messages":[${payload}]}`);
    expect(published.status).toBeLessThan(300);
    const consumed =
      protocol === "rest"
        ? await send(server.url, "GET", `/subscriptions/${id}/messages?consumer_id=w`)
        : await send(server.url, "POST", "/fastpubsub.v1.SubscriptionService/ConsumeMessages", { subscription_id: id, consumer_id: "w" });
    expect(consumed.text).toContain(`"payload":${payload}`);
  });

  it("pass filters on their readable values, and a value with a lone surrogate equals none", async () => {
    const id = uniqueId("escapes-filtered");
    const api = createApi(protocol, server.url);
    await api.topics.createTopic({ id });
    await api.subscriptions.createSubscription({ id: `${id}-pair`, topicId: id, filter: fromJson(ValueSchema, { pair: ["😀"] }) });
    await api.subscriptions.createSubscription({ id: `${id}-low`, topicId: id, filter: fromJson(ValueSchema, { low: ["x", "x\ufffd"] }) });
    const payload = '{"lone":"\\ud800","low":"x\\udc00","pair":"😀"}';
    const published =
      protocol === "rest"
        ? await send(server.url, "POST", `/topics/${id}/messages`, `[${payload}]`)
        : await send(server.url, "POST", "/fastpubsub.v1.TopicService/PublishMessages", `{"topic_id":"${id}","messages":[${payload}]}`);
    expect(published.status).toBeLessThan(300);
    expect(await consume(api, `${id}-pair`)).toHaveLength(1);
    expect(await consume(api, `${id}-low`)).toHaveLength(0);
  });
});

describe.each(protocols)("JSON nested too deeply, over %s", (protocol) => {
  const nested = (levels: number): JsonValue => (levels === 0 ? "leaf" : [nested(levels - 1)]);

  it(`is refused beyond ${maxJsonDepth} levels in a payload, and nothing is published`, async () => {
    const api = createApi(protocol, server.url);
    const id = uniqueId("deep");
    await api.topics.createTopic({ id });
    await api.subscriptions.createSubscription({ id, topicId: id });
    await api.topics.publishMessages({ topicId: id, messages: [{ a: nested(maxJsonDepth - 1) }] });
    await expectRefused(
      () => api.topics.publishMessages({ topicId: id, messages: [{ a: 1 }, { a: nested(maxJsonDepth) }] }),
      `messages[1] must not nest more than ${maxJsonDepth} levels`,
    );
    expect(await consume(api, id)).toHaveLength(1);
  });
});

describe.each(["connect-binary", "grpc", "grpc-web"] as const)("numbers that are not finite, over %s", (protocol) => {
  let api: Api;
  let topicId: string;
  beforeAll(async () => {
    api = createApi(protocol, server.url);
    topicId = uniqueId("nan");
    await api.topics.createTopic({ id: topicId });
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY])("are refused in a filter (%s), and no subscription is made", async (value) => {
    // JSON cannot write such a number: the filter {"a": [1, value]} is built as a message.
    const number = (n: number) => ({ kind: { case: "numberValue" as const, value: n } });
    const list = { kind: { case: "listValue" as const, value: { values: [number(1), number(value)] } } };
    const filter = create(ValueSchema, { kind: { case: "structValue", value: { fields: { a: list } } } });
    await expectRefused(
      () => api.subscriptions.createSubscription({ id: uniqueId("nan-filter"), topicId, filter }),
      'filter["a"][1] must be a finite number',
    );
  });

  it.each([Number.NaN, Number.NEGATIVE_INFINITY])("are refused in a payload (%s), and nothing is published", async (value) => {
    await expectRefused(
      () => api.topics.publishMessages({ topicId, messages: [{ a: 1 }, { b: [value] }] }),
      // The binary protocols' codec refuses it as it reads the payload, as protobuf-es's toJson would.
      'messages[1]: invalid google.protobuf.Struct: google.protobuf.Value cannot be NaN or Infinity (at ["b"][0])',
    );
  });
});

describe.each(jsonProtocols)("a JSON number too large for a double, over %s", (protocol) => {
  it("is refused in a payload and in a filter, where it would have become null or a 500", async () => {
    const api = createApi(protocol, server.url);
    const topicId = uniqueId("overflow");
    await api.topics.createTopic({ id: topicId });
    const publish =
      protocol === "rest"
        ? () => send(server.url, "POST", `/topics/${topicId}/messages`, '[{"a":1e400}]')
        : () =>
            send(server.url, "POST", "/fastpubsub.v1.TopicService/PublishMessages", `{"topic_id":"${topicId}","messages":[{"a":1e400}]}`);
    const subscribe = () =>
      send(
        server.url,
        "POST",
        protocol === "rest" ? "/subscriptions" : "/fastpubsub.v1.SubscriptionService/CreateSubscription",
        `{"id":"${uniqueId("overflow")}","topic_id":"${topicId}","filter":{"a":[-1e400]}}`,
      );
    for (const [call, reason] of [
      [publish, "messages[0] must hold finite numbers only"],
      [subscribe, 'filter["a"][0] must be a finite number'],
    ] as const) {
      const before = await databaseChecksum(db);
      const answer = await call();
      const body = JSON.parse(answer.text) as { detail?: string; message?: string };
      expect({ status: answer.status, reason: body.detail ?? body.message }).toEqual({ status: protocol === "rest" ? 422 : 400, reason });
      expect(await databaseChecksum(db)).toEqual(before);
    }
  });
});

describe("REST bodies of the wrong JSON type", () => {
  let topicId: string;
  let subscriptionId: string;
  let messageId: string;
  beforeAll(async () => {
    const api = createApi("rest", server.url);
    topicId = uniqueId("shape");
    subscriptionId = uniqueId("shape-sub");
    await api.topics.createTopic({ id: topicId });
    await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }] });
    messageId = (await consume(api, subscriptionId))[0]?.id ?? "";
  });

  /** Posts `body` as it is and expects 422 with `detail`, and no table to change. */
  async function expect422(path: string, body: string, detail: string) {
    const before = await databaseChecksum(db);
    const answer = await send(server.url, "POST", path, body);
    expect({ status: answer.status, body: JSON.parse(answer.text) }).toEqual({ status: 422, body: { detail } });
    expect(await databaseChecksum(db)).toEqual(before);
  }

  it.each(["acks", "nacks", "dlq/reprocess"])("are refused where the ids of %s belong", async (path) => {
    const url = `/subscriptions/${subscriptionId}/${path}`;
    await expect422(url, "null", "request body must be a JSON array, not null");
    await expect422(url, `{"message_ids":["${messageId}"]}`, "request body must be a JSON array, not an object");
    await expect422(url, `"${messageId}"`, "request body must be a JSON array, not a string");
  });

  it("are refused where the published items belong, naming the item", async () => {
    const url = `/topics/${topicId}/messages`;
    await expect422(url, "null", "request body must be a JSON array, not null");
    await expect422(url, '{"n":2}', "request body must be a JSON array, not an object");
    await expect422(url, "[null]", "request body must be a JSON array of objects: item 0 is null");
    await expect422(url, '[{"n":2},[{"n":3}]]', "request body must be a JSON array of objects: item 1 is an array");
    await expect422(url, '[{"n":2},{"n":3},"n"]', "request body must be a JSON array of objects: item 2 is a string");
    await expect422(url, '[{"n":2},7]', "request body must be a JSON array of objects: item 1 is a number");
  });

  it("are refused where a whole request belongs", async () => {
    await expect422("/topics", "null", "request body must be a JSON object");
    await expect422("/subscriptions", `[{"id":"x","topic_id":"${topicId}"}]`, "request body must be a JSON object");
  });
});

describe("a body that is not protobuf binary", () => {
  const garbage = new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const frame = (message: Uint8Array) => new Uint8Array([0, 0, 0, 0, message.length, ...message]);
  const path = "/fastpubsub.v1.TopicService/PublishMessages";

  it.each([{}, { "connect-timeout-ms": "0" }])("is invalid_argument over Connect, not internal (%j)", async (headers) => {
    const before = await databaseChecksum(db);
    const answer = await fetch(new URL(path, server.url), {
      method: "POST",
      headers: { "content-type": "application/proto", ...headers },
      body: garbage,
    });
    const { code } = (await answer.json()) as { code: string };
    // A deadline of 0 may run out before the body is read.
    expect(code).toMatch(Object.keys(headers).length === 0 ? /^invalid_argument$/ : /^(invalid_argument|deadline_exceeded)$/);
    expect(await databaseChecksum(db)).toEqual(before);
  });

  it("is invalid_argument over gRPC-Web", async () => {
    const answer = await fetch(new URL(path, server.url), {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: frame(garbage),
    });
    const text = new TextDecoder().decode(await answer.arrayBuffer());
    expect(answer.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/.exec(text)?.[1]).toBe("3");
  });

  it("is invalid_argument over gRPC", async () => {
    const session = http2.connect(server.url);
    try {
      const status = await new Promise<string | undefined>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
        let found: string | undefined;
        stream.on("response", (headers) => {
          found = headers["grpc-status"] as string | undefined;
        });
        stream.on("trailers", (trailers) => {
          found = trailers["grpc-status"] as string | undefined;
        });
        stream.on("close", () => resolve(found));
        stream.on("error", reject);
        stream.resume();
        stream.end(frame(garbage));
      });
      expect(status).toBe("3");
    } finally {
      session.close();
    }
  });
});

describe("a JSON body that is not JSON, whose error quotes it cut inside a surrogate pair", () => {
  // V8's JSON.parse quotes the start of the text: 38 UTF-16 units, the last one half of "𾱨".
  const text = `\n(${"󃴵󺸆񁓽򍞺񰱹𾱨򏪞񷳈񾀢𡏾"}`;
  const message = new TextEncoder().encode(text);
  const frame = new Uint8Array([0, 0, 0, 0, message.length, ...message]);
  const path = "/fastpubsub.v1.TopicService/GetTopic";

  it("is invalid_argument over gRPC-Web, not a 500", async () => {
    const answer = await fetch(new URL(path, server.url), {
      method: "POST",
      headers: { "content-type": "application/grpc-web+json" },
      body: frame,
    });
    const body = new TextDecoder().decode(await answer.arrayBuffer());
    expect({ status: answer.status, grpcStatus: /grpc-status:\s*(\d+)/.exec(body)?.[1] }).toEqual({ status: 200, grpcStatus: "3" });
  });

  it("is invalid_argument over gRPC, not a 500", async () => {
    const session = http2.connect(server.url);
    try {
      const answer = await new Promise<{ status?: number; grpcStatus?: string }>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc+json", te: "trailers" });
        const found: { status?: number; grpcStatus?: string } = {};
        stream.on("response", (headers) => {
          found.status = headers[":status"];
        });
        stream.on("trailers", (trailers) => {
          found.grpcStatus = trailers["grpc-status"] as string | undefined;
        });
        stream.on("close", () => resolve(found));
        stream.on("error", reject);
        stream.resume();
        stream.end(frame);
      });
      expect(answer).toEqual({ status: 200, grpcStatus: "3" });
    } finally {
      session.close();
    }
  });
});

describe("a body larger than the server reads", () => {
  const size = 20 * 1024 * 1024;
  it.each([
    ["REST", "/topics/t/messages", "application/json", new Uint8Array(size).fill(0x20), "413"],
    ["Connect", "/fastpubsub.v1.TopicService/PublishMessages", "application/json", new Uint8Array(size).fill(0x20), "429"],
    ["gRPC-Web", "/fastpubsub.v1.TopicService/PublishMessages", "application/grpc-web+proto", gRpcWebFrameOfSize(size), "200 8"],
  ])("is refused over %s, and the connection it came on does not hang the next request", async (_, path, contentType, body, refusal) => {
    const client = new Client(server.url, { pipelining: 1 });
    try {
      const refused = await client.request({ path, method: "POST", headers: { "content-type": contentType }, body });
      const text = await refused.body.text();
      const grpcStatus = refused.headers["grpc-status"] ?? /grpc-status:\s*(\d+)/.exec(text)?.[1];
      expect([refused.statusCode, grpcStatus].filter(Boolean).join(" ")).toBe(refusal);
      const next = await client.request({ path: "/liveness", method: "GET", headersTimeout: 5_000 });
      expect({ status: next.statusCode, body: await next.body.json() }).toEqual({ status: 200, body: { status: "alive" } });
    } finally {
      await client.close();
    }
  });
});

/** A gRPC-Web frame that says it holds `size` bytes, and does. */
function gRpcWebFrameOfSize(size: number) {
  const frame = new Uint8Array(5 + size);
  new DataView(frame.buffer).setUint32(1, size);
  return frame;
}

describe("compressed messages", () => {
  it("are accepted in gzip and brotli over gRPC and Connect", async () => {
    for (const compression of [compressionGzip, compressionBrotli]) {
      for (const transport of [
        createGrpcTransport({ baseUrl: server.url, sendCompression: compression }),
        createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", sendCompression: compression, compressMinBytes: 0 }),
      ]) {
        const topics = createClient(TopicService, transport);
        const id = uniqueId("zipped");
        await topics.createTopic({ id });
        expect((await topics.getTopic({ id })).id).toBe(id);
      }
    }
  });

  it("are refused as resource_exhausted when they inflate past the body limit, and change nothing", async () => {
    const topics = createClient(TopicService, createGrpcTransport({ baseUrl: server.url, sendCompression: compressionGzip }));
    const id = uniqueId("bomb");
    await topics.createTopic({ id });
    const before = await databaseChecksum(db);
    // 17 MiB of payload that gzip makes a few KB of.
    const messages = Array.from({ length: 17 }, () => ({ filler: "x".repeat(1024 * 1024) }));
    await expectCode(topics.publishMessages({ topicId: id, messages }), Code.ResourceExhausted);
    expect(await databaseChecksum(db)).toEqual(before);
  });
});
