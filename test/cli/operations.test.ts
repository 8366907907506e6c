import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { isAlive, type ServerProcess, startServerProcess } from "../support/cli.ts";
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

describe("the server under load", () => {
  it("restarts without failing a request other than with a retryable connection error, and without losing a message", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const env = {
      FASTPUBSUB_DATABASE_URL: await createTestDatabase(),
      FASTPUBSUB_API_PORT: String(port),
      FASTPUBSUB_LOG_LEVEL: "warning",
      FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS: "2",
      FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: "1",
    };
    let server: ServerProcess = await startServerProcess(env);
    const failures: string[] = [];
    const connectionErrors: string[] = [];
    /** Set when the test ends: the loops below end, and a connection error is no longer retried. */
    let stopped = false;
    /**
     * Sends until the request is answered, retrying connection errors; any answer but `expected` is a failure.
     * Once `stopped`, gives up on a connection error and returns undefined.
     */
    const send = async (method: string, path: string, body: unknown, expected: number[]) => {
      for (;;) {
        const outcome = await request(base, method, path, body);
        if ("connectionError" in outcome) {
          if (stopped) return undefined;
          connectionErrors.push(outcome.connectionError);
          await sleep(50);
          continue;
        }
        if (!expected.includes(outcome.status)) failures.push(`${method} ${path}: ${outcome.status} ${outcome.text}`);
        return outcome;
      }
    };

    const total = 3000;
    const published = new Set<number>();
    const received = new Set<number>();
    let next = 0;
    let publishing = true;
    const publisher = async () => {
      while (!stopped && next < total) {
        const batch = Array.from({ length: Math.min(50, total - next) }, () => next++);
        const answer = await send(
          "POST",
          "/topics/load/messages",
          batch.map((n) => ({ n })),
          [204],
        );
        if (answer?.status === 204) for (const n of batch) published.add(n);
      }
    };
    const consumer = async (id: string) => {
      while (!stopped && (publishing || received.size < published.size)) {
        const answer = await send("GET", `/subscriptions/load-sub/messages?consumer_id=${id}&batch_size=50`, undefined, [200]);
        const data = answer?.status === 200 ? (JSON.parse(answer.text) as { data: { id: string; payload: { n: number } }[] }).data : [];
        if (data.length === 0) {
          await sleep(20);
          continue;
        }
        await send(
          "POST",
          "/subscriptions/load-sub/acks",
          data.map((message) => message.id),
          [204],
        );
        for (const message of data) received.add(message.payload.n);
      }
    };
    let publishers: Promise<unknown> = Promise.resolve();
    let consumers: Promise<unknown> = Promise.resolve();
    let publishedBeforeRestart = 0;
    try {
      await send("POST", "/topics", { id: "load" }, [201]);
      await send("POST", "/subscriptions", { id: "load-sub", topic_id: "load", backoff_min_seconds: 1, backoff_max_seconds: 1 }, [201]);
      publishers = Promise.all([publisher(), publisher()]);
      consumers = Promise.all([consumer("c1"), consumer("c2")]);

      await waitFor(async () => (published.size > total / 3 ? true : undefined), 30_000, "a third of the messages");
      publishedBeforeRestart = published.size;
      expect(await server.stop("SIGTERM")).toBe(0);
      server = await startServerProcess(env);
      await publishers;
      publishing = false;
      await waitFor(async () => (received.size >= published.size ? true : undefined), 30_000, "the consumers to receive every message");
    } finally {
      stopped = true;
      expect(await server.stop("SIGTERM")).toBe(0);
      await Promise.all([publishers, consumers]);
    }

    expect(failures).toEqual([]);
    expect(publishedBeforeRestart).toBeLessThan(total);
    expect(connectionErrors.length).toBeGreaterThan(0);
    expect(connectionErrors.filter((error) => !retryable.test(error))).toEqual([]);
    expect(published.size).toBe(total);
    expect([...published].filter((n) => !received.has(n))).toEqual([]);
  });
});

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
