import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabasePool } from "../../src/db/pool.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");

let server: TestServer;
let gopath: string;
beforeAll(async () => {
  server = await startTestServer({ FASTPUBSUB_AUTH_ENABLED: "true", FASTPUBSUB_AUTH_SECRET_KEY: "oauth2-go-test-key-0123456789abcdef" });
  // GOPATH mode, offline, against Debian's Go packages (golang.org/x/oauth2 comes with golang-google-grpc-dev).
  gopath = await mkdtemp(join(tmpdir(), "fastpubsub-oauth2-"));
  await mkdir(join(gopath, "src"));
  await symlink(root, join(gopath, "src/fastpubsub"));
}, 120_000);
afterAll(async () => {
  await server?.close();
  if (gopath) await rm(gopath, { recursive: true, force: true });
});

describe("golang.org/x/oauth2's client-credentials flow", () => {
  it("gets a token with the credentials by HTTP Basic and in the form body, and lists topics with it", async () => {
    const env = {
      ...process.env,
      GO111MODULE: "off",
      GOPROXY: "off",
      GOPATH: `${gopath}:/usr/share/gocode`,
      GOCACHE: join(gopath, "cache"),
    };
    const binary = join(gopath, "bin/oauth2-client");
    await run("go", ["build", "-o", binary, "fastpubsub/test/system/oauth2-client"], { cwd: join(gopath, "src/fastpubsub"), env }).catch(
      (error: { stderr?: string }) => {
        throw new Error(`go build failed (install golang-go and the packages in .ci/run): ${error.stderr ?? String(error)}`);
      },
    );
    const db = await createDatabasePool(server.databaseUrl, { maxPoolSize: 1 });
    const { id, secret } = await registerClient(db, { name: "go oauth2", scopes: "topics:read" }).finally(() => db.end());
    for (const style of ["header", "params"]) {
      const { stdout } = await run(binary, ["-api", server.url, "-id", id, "-secret", secret, "-style", style]);
      expect(stdout).toBe("Bearer 200 topics:read\n");
    }
    const refused = await run(binary, ["-api", server.url, "-id", id, "-secret", "wrong", "-style", "header"]).catch(
      (error: { stderr: string }) => error.stderr,
    );
    expect(refused).toMatch(/401/);
  }, 180_000);
});
