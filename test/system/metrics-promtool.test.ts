import { spawn } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerProcess } from "../support/cli.ts";
import { uniqueId } from "../support/ids.ts";
import { consume } from "../support/messages.ts";
import { createApi, protocols } from "../support/protocols.ts";
import { createTestDatabase, startTestServer, type TestServer } from "../support/server.ts";

/** Runs Debian's `promtool check metrics` on `text` and returns its exit code and what it printed. */
async function promtoolCheck(text: string) {
  const child = spawn("promtool", ["check", "metrics"]);
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stdin.end(text);
  const [code] = (await once(child, "close")) as [number | null];
  return { code, output };
}

/** Calls every kind of RPC over every protocol, failures included, so that the labelled series have samples. */
async function sendTraffic(url: string) {
  for (const protocol of protocols) {
    const api = createApi(protocol, url);
    const topicId = uniqueId(`promtool-${protocol}`);
    const subscriptionId = `${topicId}-sub`;
    await api.topics.createTopic({ id: topicId });
    await api.subscriptions.createSubscription({ id: subscriptionId, topicId, maxDeliveryAttempts: 1 });
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }, { n: 2 }, { n: 3 }] });
    const [first, second] = await consume(api, subscriptionId, 2);
    await api.subscriptions.ackMessages({ subscriptionId, messageIds: [first?.id ?? ""] });
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [second?.id ?? ""] });
    await api.subscriptions.getSubscriptionMetrics({ subscriptionId });
    await api.topics.getTopic({ id: uniqueId("missing") }).catch(() => undefined);
  }
  await fetch(new URL("/no/such/path", url));
  await fetch(new URL("/readiness", url));
}

/** Scrapes /metrics, checks it with promtool, and returns the text. */
async function expectPromtoolPasses(url: string) {
  const response = await fetch(new URL("/metrics", url));
  expect(response.status).toBe(200);
  const text = await response.text();
  for (const family of [
    "http_requests_total",
    "fastpubsub_rpc_requests_total",
    "fastpubsub_subscription_messages",
    "nodejs_active_handles",
  ]) {
    expect(text).toMatch(new RegExp(`^${family}\\{`, "m"));
  }
  expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
  return text;
}

describe("promtool check metrics", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it("passes on /metrics of a server after traffic over every protocol", async () => {
    await sendTraffic(server.url);
    await expectPromtoolPasses(server.url);
  });

  it("passes on /metrics aggregated from several workers", async () => {
    const workers = await startServerProcess({
      FASTPUBSUB_DATABASE_URL: await createTestDatabase(),
      FASTPUBSUB_API_NUM_WORKERS: "2",
    });
    try {
      await sendTraffic(workers.url);
      await expectPromtoolPasses(workers.url);
    } finally {
      expect(await workers.stop()).toBe(0);
    }
  }, 60_000);
});
