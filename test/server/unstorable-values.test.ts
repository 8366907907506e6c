import { create, fromJson } from "@bufbuild/protobuf";
import { ListValueSchema, StringValueSchema, StructSchema, ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { AckMessagesRequestSchema, CreateSubscriptionRequestSchema } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { PublishMessagesRequestSchema } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { findUnstorableValue, maxJsonDepth } from "../../src/server/interceptors/unstorable-values.ts";

const nested = (levels: number): unknown[] => (levels <= 1 ? [] : [nested(levels - 1)]);

describe("findUnstorableValue", () => {
  it("passes every string PostgreSQL can store, surrogate pairs included", () => {
    const request = create(CreateSubscriptionRequestSchema, {
      id: "orders-😀",
      topicId: "t",
      filter: fromJson(ValueSchema, { país: ["🇧🇷", "é", 1, true] }),
    });
    expect(findUnstorableValue(CreateSubscriptionRequestSchema, request)).toBeUndefined();
  });

  it("names the field, the item and the key that hold U+0000 or a lone surrogate", () => {
    const ack = create(AckMessagesRequestSchema, { subscriptionId: "s", messageIds: ["a", "b\udc00"] });
    expect(findUnstorableValue(AckMessagesRequestSchema, ack)).toBe("message_ids[1] must not contain a lone surrogate (U+DC00)");
    const filter = (json: object) =>
      create(CreateSubscriptionRequestSchema, { id: "s", topicId: "t", filter: fromJson(ValueSchema, json as never) });
    expect(findUnstorableValue(CreateSubscriptionRequestSchema, filter({ a: ["x", "\0"] }))).toBe('filter["a"][1] must not contain U+0000');
    expect(findUnstorableValue(CreateSubscriptionRequestSchema, filter({ "\ud83d": ["x"] }))).toBe(
      'filter key "\\ud83d" must not contain a lone surrogate (U+D83D)',
    );
  });

  it("reads maps, oneofs, lists of messages and wrappers, as future fields may be", () => {
    const struct = create(StructSchema, { fields: { ok: fromJson(ValueSchema, "x"), "k\0": fromJson(ValueSchema, 1) } });
    expect(findUnstorableValue(StructSchema, struct)).toBe('fields key "k\\u0000" must not contain U+0000');
    expect(findUnstorableValue(ValueSchema, fromJson(ValueSchema, { a: "\0" }))).toBe('struct_value.fields["a"] must not contain U+0000');
    expect(findUnstorableValue(ListValueSchema, fromJson(ListValueSchema, ["x", "\ud800"]))).toBe(
      "values[1] must not contain a lone surrogate (U+D800)",
    );
    expect(findUnstorableValue(StringValueSchema, create(StringValueSchema, { value: "\0" }))).toBe("value must not contain U+0000");
  });

  it("lets payloads keep any string, and refuses them nested too deep or with numbers that are not finite", () => {
    const publish = (messages: object[]) => create(PublishMessagesRequestSchema, { topicId: "t", messages: messages as never });
    expect(
      findUnstorableValue(PublishMessagesRequestSchema, publish([{ "k\0": "\ud800\0", a: nested(maxJsonDepth - 1) }])),
    ).toBeUndefined();
    expect(findUnstorableValue(PublishMessagesRequestSchema, publish([{}, { a: nested(maxJsonDepth) }]))).toBe(
      `messages[1] must not nest more than ${maxJsonDepth} levels of arrays and objects`,
    );
    expect(findUnstorableValue(PublishMessagesRequestSchema, publish([{ a: { b: [1, Number.NaN] } }]))).toBe(
      "messages[0] must hold finite numbers only",
    );
  });
});
