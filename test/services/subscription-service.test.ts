import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCode } from "../support/expect-code.ts";
import { uniqueId } from "../support/ids.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    FASTPUBSUB_SUBSCRIPTION_MAX_ATTEMPTS: "7",
    FASTPUBSUB_SUBSCRIPTION_BACKOFF_MIN_SECONDS: "2",
    FASTPUBSUB_SUBSCRIPTION_BACKOFF_MAX_SECONDS: "90",
    FASTPUBSUB_SUBSCRIPTION_ACK_DEADLINE_SECONDS: "45",
  });
});
afterAll(async () => {
  await server.close();
});

const value = (json: JsonValue) => fromJson(ValueSchema, json);

describe.each(protocols)("SubscriptionService over %s", (protocol) => {
  let api: Api;
  let topicId: string;
  beforeAll(async () => {
    api = createApi(protocol, server.url);
    topicId = uniqueId(`topic-${protocol}`);
    await api.topics.createTopic({ id: topicId });
  });

  it("creates a subscription with the configured delivery defaults", async () => {
    const id = uniqueId("defaults");
    const created = await api.subscriptions.createSubscription({ id, topicId });
    expect(created).toMatchObject({
      id,
      topicId,
      maxDeliveryAttempts: 7,
      backoffMinSeconds: 2,
      backoffMaxSeconds: 90,
      ackDeadlineSeconds: 45,
    });
    expect(toJson(ValueSchema, created.filter ?? value(null))).toBeNull();
    const fetched = await api.subscriptions.getSubscription({ id });
    expect(fetched).toEqual(created);
  });

  it("keeps the delivery settings it is given", async () => {
    const id = uniqueId("settings");
    const created = await api.subscriptions.createSubscription({
      id,
      topicId,
      maxDeliveryAttempts: 1,
      backoffMinSeconds: 1,
      backoffMaxSeconds: 1,
      ackDeadlineSeconds: 600,
    });
    expect(created).toMatchObject({ maxDeliveryAttempts: 1, backoffMinSeconds: 1, backoffMaxSeconds: 1, ackDeadlineSeconds: 600 });
    expect(await api.subscriptions.getSubscription({ id })).toEqual(created);
  });

  it.each<[string, JsonValue]>([
    ["null", null],
    ["an empty object", {}],
    ["strings, numbers and booleans", { country: ["BR", "US"], tier: [1, 2.5], premium: [true, false] }],
    ["markup, quotes and unicode, unescaped", { note: ["<b>\"x\" & 'y'</b>", "日本語", "emoji 🎉", "a\\b"] }],
    ["an empty list", { country: [] }],
  ])("stores a filter of %s and returns it exactly as given", async (_, filter) => {
    const id = uniqueId("filter");
    const created = await api.subscriptions.createSubscription({ id, topicId, filter: value(filter) });
    expect(toJson(ValueSchema, created.filter ?? value(null))).toEqual(filter);
    const fetched = await api.subscriptions.getSubscription({ id });
    expect(toJson(ValueSchema, fetched.filter ?? value(null))).toEqual(filter);
  });

  it.each<[string, JsonValue]>([
    ["a string", "country"],
    ["a number", 1],
    ["an array", [["BR"]]],
    ["a key with a scalar value", { country: "BR" }],
    ["a key with an object value", { country: { code: "BR" } }],
    ["a key with a null item", { country: ["BR", null] }],
    ["a key with a nested list", { country: [["BR"]] }],
    ["a key with an object item", { country: [{ code: "BR" }] }],
  ])("refuses a filter that is %s and writes nothing", async (_, filter) => {
    const id = uniqueId("bad-filter");
    const error = await expectCode(api.subscriptions.createSubscription({ id, topicId, filter: value(filter) }), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^filter must be null or an object/);
    await expectCode(api.subscriptions.getSubscription({ id }), Code.NotFound);
  });

  it.each([
    ["an invalid id", { id: "bad id" }, /^id /],
    ["an empty id", { id: "" }, /^id /],
    ["a 129-character id", { id: "s".repeat(129) }, /^id /],
    ["an invalid topic id", { topicId: "bad/topic" }, /^topic_id /],
    ["zero max_delivery_attempts", { maxDeliveryAttempts: 0 }, /^max_delivery_attempts must be at least 1/],
    ["zero backoff_min_seconds", { backoffMinSeconds: 0 }, /^backoff_min_seconds must be at least 1/],
    ["negative backoff_max_seconds", { backoffMaxSeconds: -5 }, /^backoff_max_seconds must be at least 1/],
    ["zero ack_deadline_seconds", { ackDeadlineSeconds: 0 }, /^ack_deadline_seconds must be between 1 and 600/],
    ["601 ack_deadline_seconds", { ackDeadlineSeconds: 601 }, /^ack_deadline_seconds must be between 1 and 600/],
    ["backoff_min above backoff_max", { backoffMinSeconds: 20, backoffMaxSeconds: 10 }, /^backoff_min_seconds \(20\) must not be greater/],
    ["backoff_min above the default backoff_max", { backoffMinSeconds: 91 }, /^backoff_min_seconds \(91\) must not be greater/],
  ])("refuses %s as invalid_argument and writes nothing", async (_, fields, message) => {
    const id = uniqueId("invalid");
    const error = await expectCode(api.subscriptions.createSubscription({ id, topicId, ...fields }), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(message);
    await expectCode(api.subscriptions.getSubscription({ id }), Code.NotFound);
  });

  it("refuses a subscription to a missing topic as not_found", async () => {
    const id = uniqueId("orphan");
    const error = await expectCode(api.subscriptions.createSubscription({ id, topicId: uniqueId("nowhere") }), Code.NotFound);
    expect(error.rawMessage).toBe("Topic not found");
    await expectCode(api.subscriptions.getSubscription({ id }), Code.NotFound);
  });

  it("refuses a second subscription with the same id as already_exists, keeping the first", async () => {
    const id = uniqueId("dup");
    const first = await api.subscriptions.createSubscription({ id, topicId, maxDeliveryAttempts: 3 });
    const error = await expectCode(api.subscriptions.createSubscription({ id, topicId, maxDeliveryAttempts: 9 }), Code.AlreadyExists);
    expect(error.rawMessage).toBe("This subscription already exists");
    expect(await api.subscriptions.getSubscription({ id })).toEqual(first);
  });

  it("updates the delivery settings it is given, keeps the others, and lists the result", async () => {
    const id = uniqueId("update");
    const created = await api.subscriptions.createSubscription({ id, topicId, filter: value({ country: ["BR"] }) });
    const updated = await api.subscriptions.updateSubscription({ id, ackDeadlineSeconds: 30, backoffMaxSeconds: 40 });
    expect(updated).toEqual({ ...created, ackDeadlineSeconds: 30, backoffMaxSeconds: 40 });
    expect(await api.subscriptions.getSubscription({ id })).toEqual(updated);
    const all = await api.subscriptions.updateSubscription({
      id,
      maxDeliveryAttempts: 2,
      backoffMinSeconds: 3,
      backoffMaxSeconds: 4,
      ackDeadlineSeconds: 1,
    });
    expect(all).toEqual({ ...created, maxDeliveryAttempts: 2, backoffMinSeconds: 3, backoffMaxSeconds: 4, ackDeadlineSeconds: 1 });
    const listed = (await api.subscriptions.listSubscriptions({ limit: 100 })).data.find((subscription) => subscription.id === id);
    expect(listed).toEqual(all);
  });

  it("returns the subscription unchanged when an update names no setting", async () => {
    const id = uniqueId("update-nothing");
    const created = await api.subscriptions.createSubscription({ id, topicId });
    expect(await api.subscriptions.updateSubscription({ id })).toEqual(created);
    expect(await api.subscriptions.getSubscription({ id })).toEqual(created);
  });

  it.each([
    ["a topic_id", { topicId: "other" }, /^topic_id cannot be changed/],
    ["the same topic_id, beside a valid setting", { topicId: "same", ackDeadlineSeconds: 30 }, /^topic_id cannot be changed/],
    ["a null filter, beside a valid setting", { filter: value(null), maxDeliveryAttempts: 3 }, /^filter cannot be changed/],
    ["a filter", { filter: value({ country: ["BR"] }) }, /^filter cannot be changed/],
    ["zero max_delivery_attempts", { maxDeliveryAttempts: 0 }, /^max_delivery_attempts must be at least 1/],
    ["zero backoff_min_seconds", { backoffMinSeconds: 0 }, /^backoff_min_seconds must be at least 1/],
    ["zero backoff_max_seconds", { backoffMaxSeconds: 0 }, /^backoff_max_seconds must be at least 1/],
    ["zero ack_deadline_seconds", { ackDeadlineSeconds: 0 }, /^ack_deadline_seconds must be between 1 and 600/],
    [
      "backoff_min above the current backoff_max",
      { backoffMinSeconds: 91 },
      /^backoff_min_seconds \(91\) must not be greater than backoff_max_seconds \(90\)$/,
    ],
    [
      "backoff_max below the current backoff_min",
      { backoffMaxSeconds: 1 },
      /^backoff_min_seconds \(2\) must not be greater than backoff_max_seconds \(1\)$/,
    ],
    [
      "backoff_min above backoff_max",
      { backoffMinSeconds: 9, backoffMaxSeconds: 8 },
      /^backoff_min_seconds \(9\) must not be greater than backoff_max_seconds \(8\)$/,
    ],
  ])("refuses an update with %s as invalid_argument and changes nothing", async (_, fields, message) => {
    const id = uniqueId("update-invalid");
    const created = await api.subscriptions.createSubscription({ id, topicId });
    const request = { id, ...fields, ...("topicId" in fields && fields.topicId === "same" ? { topicId } : {}) };
    const error = await expectCode(api.subscriptions.updateSubscription(request), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(message);
    expect(await api.subscriptions.getSubscription({ id })).toEqual(created);
  });

  it("refuses to update a missing subscription as not_found", async () => {
    const error = await expectCode(
      api.subscriptions.updateSubscription({ id: uniqueId("nowhere"), ackDeadlineSeconds: 30 }),
      Code.NotFound,
    );
    expect(error.rawMessage).toBe("Subscription not found");
  });

  it("deletes a subscription", async () => {
    const id = uniqueId("gone");
    await api.subscriptions.createSubscription({ id, topicId });
    await api.subscriptions.deleteSubscription({ id });
    const error = await expectCode(api.subscriptions.getSubscription({ id }), Code.NotFound);
    expect(error.rawMessage).toBe("Subscription not found");
    await expectCode(api.subscriptions.deleteSubscription({ id }), Code.NotFound);
    expect((await api.topics.getTopic({ id: topicId })).id).toBe(topicId);
  });

  it("pages through subscriptions in id order", async () => {
    const prefix = uniqueId("page");
    for (const n of [2, 0, 1]) await api.subscriptions.createSubscription({ id: `${prefix}-${n}`, topicId });
    const all = (await api.subscriptions.listSubscriptions({ limit: 100 })).data.map((subscription) => subscription.id);
    expect(all).toEqual([...all].sort());
    const start = all.indexOf(`${prefix}-0`);
    const page = await api.subscriptions.listSubscriptions({ offset: start + 1, limit: 2 });
    expect(page.data.map((subscription) => subscription.id)).toEqual([`${prefix}-1`, `${prefix}-2`]);
    expect((await api.subscriptions.listSubscriptions({})).data.length).toBeLessThanOrEqual(10);
    await expectCode(api.subscriptions.listSubscriptions({ limit: 101 }), Code.InvalidArgument);
    await expectCode(api.subscriptions.listSubscriptions({ offset: -1 }), Code.InvalidArgument);
  });
});
