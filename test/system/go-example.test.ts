import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApi } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");

let server: TestServer;
let gopath: string;
beforeAll(async () => {
  server = await startTestServer();
  // GOPATH mode, offline, against Debian's Go packages: the repository is the package fastpubsub.
  gopath = await mkdtemp(join(tmpdir(), "fastpubsub-go-"));
  await mkdir(join(gopath, "src"));
  await symlink(root, join(gopath, "src/fastpubsub"));
}, 120_000);
afterAll(async () => {
  await server?.close();
  if (gopath) await rm(gopath, { recursive: true, force: true });
});

const goEnv = () => ({
  ...process.env,
  GO111MODULE: "off",
  GOPROXY: "off",
  GOPATH: `${gopath}:/usr/share/gocode`,
  GOCACHE: join(gopath, "cache"),
});

describe("the Go examples", () => {
  it("build offline and, over gRPC, publish N messages, then consume, process and ack all N", async () => {
    for (const command of ["publisher", "consumer"]) {
      await run("go", ["build", "-o", join(gopath, "bin", command), `fastpubsub/examples/go/${command}`], {
        cwd: join(gopath, "src/fastpubsub"),
        env: goEnv(),
      }).catch((error: { stderr?: string }) => {
        throw new Error(`go build failed (install golang-go and the packages in .ci/run): ${error.stderr ?? String(error)}`);
      });
    }
    const address = new URL(server.url).host;
    const flags = ["-address", address, "-topic", "go-orders", "-subscription", "go-orders-worker", "-count", "900"];
    expect((await run(join(gopath, "bin/publisher"), flags)).stdout).toBe("published 900 messages to go-orders\n");
    expect((await run(join(gopath, "bin/consumer"), flags)).stdout).toBe("processed 900 messages from go-orders-worker\n");
    const metrics = await createApi("grpc", server.url).subscriptions.getSubscriptionMetrics({ subscriptionId: "go-orders-worker" });
    expect(metrics).toMatchObject({ available: 0, delivered: 0, acked: 900, dlq: 0 });
  }, 180_000);
});
