import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFastPubSubClient } from "../../src/client.ts";
import { runScript } from "../support/cli.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

/** Runs `npm run example -- <args>` as a user would, and returns its exit code and output. */
const example = (args: string[]) => runScript("examples/ts/run.ts", args);

describe.each(["connect", "grpc", "grpc-web"] as const)("the TypeScript examples over %s", (protocol) => {
  it("publish N messages, then consume, process and ack all N", async () => {
    const names = ["--topic", `ts-${protocol}`, "--subscription", `ts-${protocol}-worker`, "--count", "700", "--batch-size", "100"];
    const common = ["--url", server.url, "--protocol", protocol, ...names];
    expect(await example(["publisher", ...common])).toEqual({ code: 0, stdout: `published 700 messages to ts-${protocol}\n`, stderr: "" });
    expect(await example(["consumer", ...common])).toEqual({
      code: 0,
      stdout: `processed 700 messages from ts-${protocol}-worker\n`,
      stderr: "",
    });
    const metrics = await createFastPubSubClient(server.url, { protocol }).subscriptions.getSubscriptionMetrics({
      subscriptionId: `ts-${protocol}-worker`,
    });
    expect(metrics).toMatchObject({ available: 0, delivered: 0, acked: 700, dlq: 0 });
  });
});
