import { create, fromJson, type JsonObject, toJson } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  ConsumeMessagesResponseSchema,
  ListDlqMessagesResponseSchema,
  MessageSchema,
  SubscriptionSchema,
} from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { PublishMessagesRequestSchema } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { requestFromJson, responseToJson } from "../../src/server/rest/struct-json.ts";

// The REST transcoder's Struct pass-through must write and read exactly what protobuf-es does.
const options = { useProtoFieldName: true, alwaysEmitImplicit: true, ignoreUnknownFields: true };
const payloads: JsonObject[] = [
  {},
  { a: 1, b: "two", c: true, d: null, e: [1, "x", { f: [] }], g: { h: { i: -0.5 } } },
  { "ünï/cødé 🚀": '\u0000\u2028 "quoted"', big: 9007199254740991, tiny: 1e-300 },
];

describe("REST Struct pass-through", () => {
  it("writes responses exactly as toJson does, field order included", () => {
    const messages = payloads.map((payload, n) =>
      create(MessageSchema, {
        id: `id-${n}`,
        subscriptionId: "s",
        payload,
        deliveryAttempts: n,
        createdAt: timestampFromMs(1_764_000_000_123 + n),
      }),
    );
    messages.push(create(MessageSchema, { id: "without-payload" }));
    for (const [schema, message] of [
      [ConsumeMessagesResponseSchema, create(ConsumeMessagesResponseSchema, { data: messages })],
      [ConsumeMessagesResponseSchema, create(ConsumeMessagesResponseSchema, {})],
      [ListDlqMessagesResponseSchema, create(ListDlqMessagesResponseSchema, { data: messages })],
      [MessageSchema, messages[1]],
      [SubscriptionSchema, create(SubscriptionSchema, { id: "s", topicId: "t" })],
    ] as const) {
      // biome-ignore lint/suspicious/noExplicitAny: each pair matches its own schema
      const expected = JSON.stringify(toJson(schema as any, message as any, options));
      // biome-ignore lint/suspicious/noExplicitAny: as above
      expect(JSON.stringify(responseToJson(schema as any, message as any, options))).toBe(expected);
    }
  });

  it("reads requests exactly as fromJson does", () => {
    const requests: JsonObject[] = [{ topicId: "t", messages: payloads }, { topicId: "t" }, { topicId: "t", messages: [] }];
    for (const json of requests) {
      expect(requestFromJson(PublishMessagesRequestSchema, json)).toStrictEqual(fromJson(PublishMessagesRequestSchema, json));
    }
  });

  it("leaves a payload that is no JSON object to fromJson and its error", () => {
    for (const messages of [[1], [null], [[]], ["text"], { a: 1 }, "text"]) {
      const json = { topicId: "t", messages } as JsonObject;
      const expected = errorOf(() => fromJson(PublishMessagesRequestSchema, json));
      expect(expected).toBeTruthy();
      expect(errorOf(() => requestFromJson(PublishMessagesRequestSchema, json))).toBe(expected);
    }
  });
});

function errorOf(read: () => unknown) {
  try {
    read();
  } catch (error) {
    return (error as Error).message;
  }
  return undefined;
}
