import { chmod, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { isAlive, type ServerProcess, startServerProcess } from "../support/cli.ts";
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

describe("without FASTPUBSUB_DATABASE_URL the server", () => {
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "fastpubsub-embedded-"));
    await chmod(dir, 0o755);
    env = { FASTPUBSUB_EMBEDDED_DATA_DIR: join(dir, ".fastpubsub"), FASTPUBSUB_EMBEDDED_PORT: String(await freePort()) };
  });
  afterAll(async () => {
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

  it("starts again after a crash left its PostgreSQL running", async () => {
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
