import { type ChildProcess, spawn } from "node:child_process";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { isAlive, runCli, type ServerProcess, startServerProcess } from "../support/cli.ts";
import { freePort } from "../support/ports.ts";

/** Creates and reads back a topic over REST and over Connect. */
async function expectServes(url: string, id: string) {
  const created = await fetch(new URL("/topics", url), {
    method: "POST",
    body: JSON.stringify({ id }),
    headers: { "content-type": "application/json" },
  });
  expect(created.status).toBe(201);
  const connect = await fetch(new URL("/fastpubsub.v1.TopicService/GetTopic", url), {
    method: "POST",
    body: JSON.stringify({ id }),
    headers: { "content-type": "application/json" },
  });
  expect(connect.status).toBe(200);
  expect(await connect.json()).toMatchObject({ id });
  const client = createClient(TopicService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
  expect((await client.getTopic({ id })).id).toBe(id);
}

/** Asks `url` for the topic `id` every 50 ms until the returned function is called, which resolves with every status answered. */
function keepAsking(url: string, id: string) {
  const statuses: number[] = [];
  let asking = true;
  const done = (async () => {
    while (asking) {
      statuses.push(
        await fetch(new URL(`/topics/${id}`, url)).then(
          (response) => response.status,
          () => 0,
        ),
      );
      await sleep(50);
    }
  })();
  return async () => {
    asking = false;
    await done;
    return statuses;
  };
}

/** The pid in the postmaster.pid of the data folder under `baseDir`, or undefined when there is none. */
async function postmasterPid(baseDir: string) {
  const text = await readFile(join(baseDir, "pgdata/postmaster.pid"), "utf8").catch(() => undefined);
  return text === undefined ? undefined : Number(text.split("\n")[0]);
}

describe("without FASTPUBSUB_DATABASE_URL the server", () => {
  let dir: string;
  let env: Record<string, string>;
  let baseDir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "fastpubsub-embedded-"));
    await chmod(dir, 0o755);
    baseDir = join(dir, ".fastpubsub");
    env = { FASTPUBSUB_EMBEDDED_DATA_DIR: baseDir, FASTPUBSUB_EMBEDDED_PORT: String(await freePort()) };
  });
  afterAll(async () => {
    // A failed test may leave a PostgreSQL running on a folder about to be removed.
    for (const name of await readdir(dir)) {
      const pid = await postmasterPid(join(dir, name));
      if (pid && isAlive(pid)) process.kill(pid, "SIGQUIT");
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("starts an embedded PostgreSQL, serves, says so, and stops it on SIGTERM", async () => {
    const server = await startServerProcess(env);
    try {
      expect(server.log()).toContain("embedded PostgreSQL started");
      await expectServes(server.url, "embedded-1");
    } finally {
      expect(await server.stop("SIGTERM")).toBe(0);
    }
    expect(await readdir(join(dir, ".fastpubsub/pgdata"))).not.toContain("postmaster.pid");
  });

  it("keeps its data and stops cleanly on SIGINT", async () => {
    const server = await startServerProcess(env);
    try {
      const kept = await fetch(new URL("/topics/embedded-1", server.url));
      expect(kept.status).toBe(200);
    } finally {
      expect(await server.stop("SIGINT")).toBe(0);
    }
  });

  it("stops a PostgreSQL whose process was killed, and starts its own", async () => {
    const crashed: ServerProcess = await startServerProcess(env);
    expect(await crashed.stop("SIGKILL")).toBe(null);
    const pidFile = await import("node:fs/promises").then((fs) => fs.readFile(join(dir, ".fastpubsub/pgdata/postmaster.pid"), "utf8"));
    const stalePid = Number(pidFile.split("\n")[0]);
    expect(isAlive(stalePid)).toBe(true);
    const server = await startServerProcess(env);
    try {
      expect(isAlive(stalePid)).toBe(false);
      await expectServes(server.url, "embedded-2");
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it("shares its PostgreSQL with a command and a second server, which leave it running when they exit", async () => {
    const first = await startServerProcess(env);
    try {
      await expectServes(first.url, "shared-1");
      const postmaster = await postmasterPid(baseDir);
      const answered = keepAsking(first.url, "shared-1");
      const command = await runCli(["create_client", "shared", "*", "true"], env);
      expect(command).toMatchObject({ code: 0, stdout: expect.stringMatching(/^client_id=/) });
      expect(command.stderr).toContain("using the embedded PostgreSQL that another fastpubsub process started");
      const second = await startServerProcess(env);
      try {
        expect(second.url).not.toBe(first.url);
        expect(second.log()).toContain("using the embedded PostgreSQL that another fastpubsub process started");
        await expectServes(second.url, "shared-2");
      } finally {
        expect(await second.stop()).toBe(0);
      }
      await sleep(300);
      expect(new Set(await answered())).toEqual(new Set([200]));
      expect(await postmasterPid(baseDir)).toBe(postmaster);
      await expectServes(first.url, "shared-3");
    } finally {
      expect(await first.stop()).toBe(0);
    }
    expect(await postmasterPid(baseDir)).toBeUndefined();
  });

  it("starts one PostgreSQL for two servers started at once on a new folder, and keeps it for the one left", async () => {
    const sharedDir = join(dir, "at-once");
    const shared = { ...env, FASTPUBSUB_EMBEDDED_DATA_DIR: sharedDir, FASTPUBSUB_EMBEDDED_PORT: String(await freePort()) };
    const servers = await Promise.all([startServerProcess(shared), startServerProcess(shared)]);
    const starter = servers.findIndex((server) => server.log().includes("embedded PostgreSQL started"));
    expect(starter).toBeGreaterThanOrEqual(0);
    const [first, other] = [servers[starter] as ServerProcess, servers[1 - starter] as ServerProcess];
    try {
      expect(other.log()).toContain("using the embedded PostgreSQL that another fastpubsub process started");
      await expectServes(first.url, "at-once-1");
      expect(await first.stop()).toBe(0);
      await expectServes(other.url, "at-once-2");
    } finally {
      await first.stop();
      expect(await other.stop()).toBe(0);
    }
    expect(await postmasterPid(sharedDir)).toBeUndefined();
  });

  it("never signals the process that now has the pid of a stale postmaster.pid, and starts", async () => {
    const server = await startServerProcess(env);
    const pidFile = join(baseDir, "pgdata/postmaster.pid");
    const lines = (await readFile(pidFile, "utf8")).split("\n");
    expect(await server.stop()).toBe(0);
    const other = await startServerProcess({
      ...env,
      FASTPUBSUB_EMBEDDED_DATA_DIR: join(dir, "other"),
      FASTPUBSUB_EMBEDDED_PORT: String(await freePort()),
    });
    const sleeper: ChildProcess = spawn("sleep", ["60"]);
    try {
      const otherPostmaster = (await postmasterPid(join(dir, "other"))) as number;
      // As after a reboot: the file outlived its postmaster, and its pid went to a process of another program, or of another PostgreSQL.
      for (const reused of [sleeper.pid as number, otherPostmaster]) {
        await writeFile(pidFile, [String(reused), ...lines.slice(1)].join("\n"));
        const restarted = await startServerProcess(env);
        try {
          expect(restarted.log()).toContain("removing a stale postmaster.pid");
          await expectServes(restarted.url, `reused-${reused}`);
        } finally {
          expect(await restarted.stop()).toBe(0);
        }
        expect(isAlive(reused)).toBe(true);
      }
      expect(sleeper.exitCode).toBe(null);
      await expectServes(other.url, "reused-other");
    } finally {
      sleeper.kill();
      expect(await other.stop()).toBe(0);
    }
  });

  it("uses another data folder when the postgres user cannot reach the configured one", async () => {
    const hidden = await mkdtemp(join(tmpdir(), "fastpubsub-hidden-"));
    await chmod(hidden, 0o700);
    const server = await startServerProcess({ ...env, FASTPUBSUB_EMBEDDED_DATA_DIR: join(hidden, "data") });
    let used = "";
    try {
      used = /"used":"([^"]+)"/.exec(server.log())?.[1] ?? "";
      expect(used).toMatch(/^\/tmp\/fastpubsub-/);
      expect((await stat(used)).isDirectory()).toBe(true);
      await expectServes(server.url, "embedded-3");
    } finally {
      expect(await server.stop()).toBe(0);
      await rm(hidden, { recursive: true, force: true });
      if (used) await rm(used, { recursive: true, force: true });
    }
  });
});
