import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isAlive, startServerProcess } from "../support/cli.ts";
import { type Answer, send as sendHttp } from "../support/http.ts";
import { freePort } from "../support/ports.ts";
import { createTestDatabase } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

/** Pids of the running processes whose command line contains `text`. */
function processesWith(text: string): number[] {
  try {
    return execFileSync("pgrep", ["-f", text], { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function isChildOf(pid: number, parent: number | undefined) {
  try {
    return Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]) === parent;
  } catch {
    return false;
  }
}

/** A request's outcome: its answer, or the connection error that prevented one. */
type Outcome = Answer | { connectionError: string };

async function request(base: string, method: string, path: string, body?: unknown): Promise<Outcome> {
  try {
    return await sendHttp(base, method, path, body);
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return { connectionError: cause?.code ?? cause?.message ?? String(error) };
  }
}

const retryable = /^(ECONNREFUSED|ECONNRESET|EPIPE|UND_ERR_SOCKET|UND_ERR_CLOSED|other side closed)/;

describe("several workers", () => {
  it("serve one port, aggregate their metrics, replace a worker that dies, and stop together", async () => {
    const env = { FASTPUBSUB_DATABASE_URL: await createTestDatabase(), FASTPUBSUB_API_NUM_WORKERS: "2" };
    const server = await startServerProcess(env);
    const seen = new Set<number>();
    try {
      const workers = () => {
        const pids = processesWith("cli/run.ts server").filter((pid) => pid !== server.child.pid && isChildOf(pid, server.child.pid));
        for (const pid of pids) seen.add(pid);
        return pids;
      };
      await waitFor(async () => (workers().length === 2 ? true : undefined));
      expect((await request(server.url, "POST", "/topics", { id: "shared" })) as { status: number }).toMatchObject({ status: 201 });
      expect(await request(server.url, "POST", "/subscriptions", { id: "shared-sub", topic_id: "shared" })).toMatchObject({ status: 201 });
      expect(await request(server.url, "POST", "/topics/shared/messages", [{ n: 1 }, { n: 2 }, { n: 3 }])).toMatchObject({ status: 204 });
      for (let n = 0; n < 10; n++) {
        expect(await request(server.url, "GET", "/topics/shared")).toMatchObject({ status: 200 });
      }
      const metrics = await request(server.url, "GET", "/metrics");
      expect(metrics).toMatchObject({ status: 200 });
      const text = (metrics as Answer).text;
      expect(text).toContain('http_requests_total{method="GET",path="/topics/{id}",status="200"} 10');
      // The queue gauges come once, from the primary, however many workers there are.
      expect(text.match(/^fastpubsub_subscription_messages\{.*$/gm)).toEqual([
        'fastpubsub_subscription_messages{subscription="shared-sub",state="available"} 3',
        'fastpubsub_subscription_messages{subscription="shared-sub",state="delivered"} 0',
        'fastpubsub_subscription_messages{subscription="shared-sub",state="dlq"} 0',
      ]);
      expect(text.match(/^# TYPE fastpubsub_subscription_oldest_available_age_seconds gauge$/gm)).toHaveLength(1);

      const [victim] = workers();
      process.kill(victim as number, "SIGKILL");
      await waitFor(
        async () => (workers().length === 2 && !workers().includes(victim as number) ? true : undefined),
        10_000,
        "a new worker",
      );
      // The kept-alive connection of earlier requests may have been the dead worker's: like any
      // client, the test may see that once as a retryable connection error, then gets its answer.
      const answer = await waitFor(async () => {
        const outcome = await request(server.url, "GET", "/topics/shared");
        if (!("connectionError" in outcome)) return outcome;
        expect(outcome.connectionError).toMatch(retryable);
        return undefined;
      });
      expect(answer).toMatchObject({ status: 200 });
    } finally {
      expect(await server.stop("SIGTERM")).toBe(0);
    }
    expect([...seen].filter(isAlive)).toEqual([]);
  });
});

describe("the request log", () => {
  it("has one line per request in the seed's format, with method, route, status and duration", async () => {
    const server = await startServerProcess({ FASTPUBSUB_DATABASE_URL: await createTestDatabase() });
    try {
      await request(server.url, "POST", "/topics", { id: "logged" });
      await request(server.url, "GET", "/topics/logged");
    } finally {
      await server.stop();
    }
    const lines = server
      .log()
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const requests = lines.filter((line) => line.message === "request");
    expect(requests).toHaveLength(2);
    expect(requests[1]).toEqual({
      asctime: expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}$/),
      levelname: "INFO",
      pathname: expect.stringMatching(/src\/server\/handler\.ts$/),
      lineno: expect.any(Number),
      message: "request",
      method: "GET",
      route: "/topics/{id}",
      path: "/topics/logged",
      status: 200,
      duration: expect.stringMatching(/^\d+\.\d{4}s$/),
    });
  });

  it("follows FASTPUBSUB_LOG_FORMATTER and FASTPUBSUB_LOG_LEVEL", async () => {
    const quiet = await startServerProcess({
      FASTPUBSUB_DATABASE_URL: await createTestDatabase(),
      FASTPUBSUB_API_PORT: String(await freePort()),
      FASTPUBSUB_LOG_FORMATTER: "%(levelname)s %(message)s",
      FASTPUBSUB_LOG_LEVEL: "warning",
    });
    await request(quiet.url, "GET", "/liveness");
    await quiet.stop();
    expect(quiet.log()).toBe("");
    const terse = await startServerProcess({
      FASTPUBSUB_DATABASE_URL: await createTestDatabase(),
      FASTPUBSUB_LOG_FORMATTER: "%(levelname)s %(message)s",
    });
    await request(terse.url, "GET", "/liveness");
    await terse.stop();
    const first = JSON.parse(terse.log().trim().split("\n")[0] ?? "{}") as Record<string, unknown>;
    expect(Object.keys(first).slice(0, 2)).toEqual(["levelname", "message"]);
    expect(terse.log()).toContain('"message":"request","method":"GET","route":"/liveness"');
  });
});
