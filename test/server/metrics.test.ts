import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uniqueId } from "../support/ids.ts";
import { createApi } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const scrape = async () => {
  const response = await fetch(new URL("/metrics", server.url));
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return response.text();
};

/** The value of one series, or undefined when it is absent. */
function value(text: string, series: string) {
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("/metrics", () => {
  it("counts and times requests by method, route template and status, as the seed's dashboards expect", async () => {
    const rest = createApi("rest", server.url);
    const id = uniqueId("metrics");
    await rest.topics.createTopic({ id });
    for (let n = 0; n < 3; n++) await rest.topics.getTopic({ id });
    await fetch(new URL(`/topics/${uniqueId("none")}`, server.url));
    await fetch(new URL(`/no/such/path/${id}`, server.url));
    const text = await scrape();
    expect(value(text, 'http_requests_total{method="POST",path="/topics",status="201"}')).toBe(1);
    expect(value(text, 'http_requests_total{method="GET",path="/topics/{id}",status="200"}')).toBe(3);
    expect(value(text, 'http_requests_total{method="GET",path="/topics/{id}",status="404"}')).toBe(1);
    expect(value(text, 'http_requests_total{method="GET",path="unmatched",status="404"}')).toBe(1);
    expect(value(text, 'http_request_duration_seconds_count{method="GET",path="/topics/{id}"}')).toBe(4);
    expect(text).toContain('http_request_duration_seconds_bucket{le="0.005",method="GET",path="/topics/{id}"}');
    expect(text).toMatch(/^http_requests_in_progress \d+$/m);
    // No raw id ever becomes a label.
    expect(text).not.toContain(id);
  });

  it("counts RPCs by procedure, protocol and code", async () => {
    const id = uniqueId("rpc");
    await createApi("grpc", server.url).topics.createTopic({ id });
    await createApi("grpc", server.url)
      .topics.getTopic({ id: uniqueId("none") })
      .catch(() => undefined);
    await createApi("connect-json", server.url).topics.getTopic({ id });
    await createApi("grpc-web", server.url).topics.getTopic({ id });
    const text = await scrape();
    const rpc = (method: string, protocol: string, code: string) =>
      value(
        text,
        `fastpubsub_rpc_requests_total{service="fastpubsub.v1.TopicService",method="${method}",protocol="${protocol}",code="${code}"}`,
      );
    expect(rpc("CreateTopic", "grpc", "ok")).toBe(1);
    expect(rpc("GetTopic", "grpc", "not_found")).toBe(1);
    expect(rpc("GetTopic", "connect", "ok")).toBe(1);
    expect(rpc("GetTopic", "grpc-web", "ok")).toBe(1);
    expect(text).toMatch(
      /^fastpubsub_rpc_duration_seconds_count\{service="fastpubsub.v1.TopicService",method="GetTopic",protocol="grpc"\} 1$/m,
    );
    expect(
      value(text, 'http_requests_total{method="POST",path="/fastpubsub.v1.TopicService/GetTopic",status="200"}'),
    ).toBeGreaterThanOrEqual(3);
  });

  it("shows each subscription's queue, the database pools and the process", async () => {
    const api = createApi("rest", server.url);
    const topicId = uniqueId("queue");
    const subscriptionId = uniqueId("queue-sub");
    await api.topics.createTopic({ id: topicId });
    await api.subscriptions.createSubscription({ id: subscriptionId, topicId, maxDeliveryAttempts: 1 });
    await api.topics.publishMessages({ topicId, messages: [{ n: 1 }, { n: 2 }, { n: 3 }] });
    const [first] = (await api.subscriptions.consumeMessages({ subscriptionId, consumerId: "w", batchSize: 1 })).data;
    await api.subscriptions.nackMessages({ subscriptionId, messageIds: [first?.id as string] });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const text = await scrape();
    const queue = (state: string) => value(text, `fastpubsub_subscription_messages{subscription="${subscriptionId}",state="${state}"}`);
    expect([queue("available"), queue("delivered"), queue("dlq")]).toEqual([2, 0, 1]);
    expect(value(text, `fastpubsub_subscription_oldest_available_age_seconds{subscription="${subscriptionId}"}`)).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^fastpubsub_db_pool_connections\{pool="queue",state="idle"\} \d+$/m);
    expect(text).toMatch(/^fastpubsub_db_pool_connections\{pool="main",state="in_use"\} \d+$/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total [\d.e+-]+$/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds [\d.e+-]+$/m);
  });
});
