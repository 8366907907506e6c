import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConsumeMessagesResponseSchema, MessageSchema, SubscriptionSchema } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { jsonWriterOf } from "../../src/server/rest/json-writer.ts";
import { payloadFromText } from "../../src/wire/payload-text.ts";

const options = { useProtoFieldName: true, alwaysEmitImplicit: true };
// What JSON.parse can give for a payload: no undefined, no non-finite numbers.
const payloadArb = fc.dictionary(fc.string({ unit: "grapheme" }), fc.jsonValue({ maxDepth: 4 })) as fc.Arbitrary<JsonObject>;
const timestampArb = fc.oneof(
  fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_999 }).map((ms) => timestampFromMs(ms)),
  fc.record({ seconds: fc.bigInt(-62_135_596_800n, 253_402_300_799n), nanos: fc.integer({ min: 0, max: 999_999_999 }) }),
);
// A dead letter also has dead_lettered_at and reason (an optional string, "" included); other messages have neither.
const messageArb = fc.record(
  {
    id: fc.uuid(),
    subscriptionId: fc.string({ unit: "binary" }),
    payload: payloadArb,
    deliveryAttempts: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    createdAt: timestampArb,
    deadLetteredAt: timestampArb,
    reason: fc.string({ unit: "binary", maxLength: 20 }),
  },
  { requiredKeys: ["id", "subscriptionId", "payload", "deliveryAttempts", "createdAt"] },
);

describe("the REST JSON writer", () => {
  it("writes a batch of messages as protobuf-es writes it, a payload's JSON text as it is", () => {
    const write = jsonWriterOf(ConsumeMessagesResponseSchema, options);
    expect(write).toBeDefined();
    fc.assert(
      fc.property(fc.array(messageArb, { maxLength: 5 }), (fields) => {
        const data = fields.map((field) => create(MessageSchema, field));
        const response = create(ConsumeMessagesResponseSchema, { data });
        const expected = JSON.stringify(toJson(ConsumeMessagesResponseSchema, response, options));
        expect(write?.(response)).toBe(expected);
        // The same, with each payload still the text PostgreSQL returns.
        const asText = create(ConsumeMessagesResponseSchema, {
          data: data.map((message) => ({ ...message, payload: payloadFromText(JSON.stringify(message.payload)) })),
        });
        expect(write?.(asText)).toBe(expected);
      }),
    );
  });

  it("leaves an unset message field out and refuses a timestamp JSON cannot write", () => {
    const write = jsonWriterOf(MessageSchema, options);
    expect(write?.(create(MessageSchema, { id: "x" }))).toBe(
      JSON.stringify(toJson(MessageSchema, create(MessageSchema, { id: "x" }), options)),
    );
    const outOfRange = create(MessageSchema, { createdAt: { seconds: 253_402_300_800n, nanos: 0 } });
    expect(() => write?.(outOfRange)).toThrow(/out of range/);
  });

  it("leaves message types with fields it does not write to protobuf-es", () => {
    // The subscription's filter is a google.protobuf.Value.
    expect(jsonWriterOf(SubscriptionSchema, options)).toBeUndefined();
    expect(jsonWriterOf(MessageSchema, { useProtoFieldName: false, alwaysEmitImplicit: true })).toBeUndefined();
  });
});
