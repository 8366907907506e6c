import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFastPubSubClient } from "../../src/client.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const root = join(import.meta.dirname, "../..");

/** Runs `npm run example -- <args>` as a user would, and returns its exit code and output. */
async function example(args: string[]) {
  const child = spawn(process.execPath, [join(root, "examples/ts/run.ts"), ...args], { cwd: root });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  const [code] = (await once(child, "close")) as [number | null];
  return { code, output };
}

describe.each(["connect", "grpc", "grpc-web"] as const)("the TypeScript examples over %s", (protocol) => {
  it("publish N messages, then consume, process and ack all N", async () => {
    const names = ["--topic", `ts-${protocol}`, "--subscription", `ts-${protocol}-worker`, "--count", "700", "--batch-size", "100"];
    const common = ["--url", server.url, "--protocol", protocol, ...names];
    expect(await example(["publisher", ...common])).toEqual({ code: 0, output: `published 700 messages to ts-${protocol}\n` });
    expect(await example(["consumer", ...common])).toEqual({ code: 0, output: `processed 700 messages from ts-${protocol}-worker\n` });
    const metrics = await createFastPubSubClient(server.url, { protocol }).subscriptions.getSubscriptionMetrics({
      subscriptionId: `ts-${protocol}-worker`,
    });
    expect(metrics).toMatchObject({ available: 0, delivered: 0, acked: 700, dlq: 0 });
  });
});

describe("createFastPubSubClient", () => {
  it("sends the token it is given, fetched anew by a function when it is one", async () => {
    const seen: string[] = [];
    const client = createFastPubSubClient(server.url, {
      token: () => {
        seen.push("asked");
        return "abc";
      },
    });
    await client.topics.listTopics({});
    await client.topics.listTopics({});
    expect(seen).toEqual(["asked", "asked"]);
  });
});
