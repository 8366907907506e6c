import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCode } from "../support/expect-code.ts";
import { uniqueId } from "../support/ids.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

describe.each(protocols)("TopicService over %s", (protocol) => {
  let api: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
  });

  it("creates a topic and gets it back", async () => {
    const id = uniqueId("orders");
    const created = await api.topics.createTopic({ id });
    expect(created.id).toBe(id);
    const age = Date.now() - Number(created.createdAt?.seconds ?? 0) * 1000;
    expect(age).toBeGreaterThanOrEqual(-5_000);
    expect(age).toBeLessThan(60_000);
    const fetched = await api.topics.getTopic({ id });
    expect(fetched.id).toBe(id);
    expect(fetched.createdAt).toEqual(created.createdAt);
  });

  it("refuses a second topic with the same id as already_exists", async () => {
    const id = uniqueId("dup");
    await api.topics.createTopic({ id });
    const error = await expectCode(api.topics.createTopic({ id }), Code.AlreadyExists);
    expect(error.rawMessage).toBe("This topic already exists");
  });

  it("answers not_found for a topic that does not exist", async () => {
    const error = await expectCode(api.topics.getTopic({ id: uniqueId("missing") }), Code.NotFound);
    expect(error.rawMessage).toBe("Topic not found");
    await expectCode(api.topics.deleteTopic({ id: uniqueId("missing") }), Code.NotFound);
  });

  it("deletes a topic", async () => {
    const id = uniqueId("gone");
    await api.topics.createTopic({ id });
    await api.topics.deleteTopic({ id });
    await expectCode(api.topics.getTopic({ id }), Code.NotFound);
    await expectCode(api.topics.deleteTopic({ id }), Code.NotFound);
  });

  it("deletes the subscriptions of a deleted topic", async () => {
    const topicId = uniqueId("cascade");
    const subscriptionId = uniqueId("cascade-sub");
    await api.topics.createTopic({ id: topicId });
    await api.subscriptions.createSubscription({ id: subscriptionId, topicId });
    await api.topics.deleteTopic({ id: topicId });
    await expectCode(api.subscriptions.getSubscription({ id: subscriptionId }), Code.NotFound);
  });

  it("accepts every character the id rule allows, up to 128 of them", async () => {
    for (const id of [`A-z_0.9-${protocol}`, `${protocol}-`.padEnd(128, "x")]) {
      expect((await api.topics.createTopic({ id })).id).toBe(id);
      expect((await api.topics.getTopic({ id })).id).toBe(id);
    }
  });

  it.each([
    ["an empty id", ""],
    ["a space", "has space"],
    ["a slash", "a/b"],
    ["a colon", "a:b"],
    ["a non-ASCII letter", "café"],
    ["129 characters", "y".repeat(129)],
  ])("refuses %s as invalid_argument and writes nothing", async (_, id) => {
    const error = await expectCode(api.topics.createTopic({ id }), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^id /);
    if (id !== "" && !id.includes("/")) await expectCode(api.topics.getTopic({ id }), Code.NotFound);
  });
});

describe.each(protocols)("ListTopics over %s", (protocol) => {
  let api: Api;
  const prefix = `list-${protocol}`;
  beforeAll(async () => {
    api = createApi(protocol, server.url);
  });

  it("pages through topics in id order", async () => {
    const ids = [3, 1, 4, 0, 2].map((n) => `${prefix}-${n}`);
    for (const id of ids) await api.topics.createTopic({ id });
    const all = (await api.topics.listTopics({ limit: 100 })).data.map((topic) => topic.id);
    const ours = all.filter((id) => id.startsWith(`${prefix}-`));
    expect(ours).toEqual([...ids].sort());
    expect(all).toEqual([...all].sort());

    const start = all.indexOf(`${prefix}-0`);
    const page = await api.topics.listTopics({ offset: start + 1, limit: 2 });
    expect(page.data.map((topic) => topic.id)).toEqual([`${prefix}-1`, `${prefix}-2`]);
    const past = await api.topics.listTopics({ offset: 10_000, limit: 10 });
    expect(past.data).toEqual([]);
  });

  it("returns ten topics when no limit is given", async () => {
    for (let n = 0; n < 11; n++) await api.topics.createTopic({ id: `${prefix}-default-${String(n).padStart(2, "0")}` });
    expect((await api.topics.listTopics({})).data).toHaveLength(10);
    expect((await api.topics.listTopics({ offset: 0, limit: 100 })).data.length).toBeGreaterThanOrEqual(11);
  });

  it.each([
    ["limit 0", { limit: 0 }],
    ["limit 101", { limit: 101 }],
    ["a negative limit", { limit: -1 }],
    ["a negative offset", { offset: -1 }],
  ])("refuses %s as invalid_argument", async (_, page) => {
    const error = await expectCode(api.topics.listTopics(page), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(/^(limit|offset) must be/);
  });
});
