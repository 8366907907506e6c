import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningServer, startServer } from "../../src/server/server.ts";
import { freePort } from "../support/ports.ts";
import { createTestDatabase, startTestServer, type TestServer } from "../support/server.ts";
import { createTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");

let server: TestServer;
let gopath: string;
let binary: string;
beforeAll(async () => {
  server = await startTestServer();
  // GOPATH mode, offline, against Debian's Go packages (grpc-go, as the kubelet's grpc probe uses).
  gopath = await mkdtemp(join(tmpdir(), "fastpubsub-grpc-go-"));
  await mkdir(join(gopath, "src"));
  await symlink(root, join(gopath, "src/fastpubsub"));
  binary = join(gopath, "bin/grpc-go-client");
  const env = { ...process.env, GO111MODULE: "off", GOPROXY: "off", GOPATH: `${gopath}:/usr/share/gocode`, GOCACHE: join(gopath, "cache") };
  await run("go", ["build", "-o", binary, "fastpubsub/test/system/grpc-go-client"], { cwd: join(gopath, "src/fastpubsub"), env }).catch(
    (error: { stderr?: string }) => {
      throw new Error(`go build failed (install golang-go and the packages in .ci/run): ${error.stderr ?? String(error)}`);
    },
  );
}, 180_000);
afterAll(async () => {
  await server?.close();
  if (gopath) await rm(gopath, { recursive: true, force: true });
});

/** Runs the Go client and returns its exit code and output. */
async function grpcGo(args: string[]) {
  try {
    const { stdout, stderr } = await run(binary, args);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("a grpc-go health probe, as a Kubernetes grpc probe calls it", () => {
  it("gets SERVING for the server and an API service, and not_found for an unknown service", async () => {
    const address = new URL(server.url).host;
    expect((await grpcGo(["probe", "-address", address])).stdout).toBe("SERVING\n");
    expect((await grpcGo(["probe", "-address", address, "-service", "fastpubsub.v1.TopicService"])).stdout).toBe("SERVING\n");
    const unknown = await grpcGo(["probe", "-address", address, "-service", "nope"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("code = NotFound");
  });

  describe("of a server whose database does not answer", () => {
    let proxy: TcpProxy;
    let unready: RunningServer;
    beforeAll(async () => {
      const database = new URL(await createTestDatabase());
      proxy = createTcpProxy(await freePort(), Number(database.port || 5432));
      database.port = String(proxy.port);
      const config = loadConfig({
        FASTPUBSUB_DATABASE_URL: database.toString(),
        FASTPUBSUB_API_HOST: "127.0.0.1",
        FASTPUBSUB_API_PORT: "0",
        FASTPUBSUB_LOG_LEVEL: "critical",
      });
      unready = await startServer(config, createLogger({ level: "critical", format: "%(message)s" }));
    });
    afterAll(async () => {
      await unready.close();
      await proxy.close();
    });

    it("gets NOT_SERVING", async () => {
      expect((await grpcGo(["probe", "-address", new URL(unready.url).host])).stdout).toBe("NOT_SERVING\n");
    });
  });
});

describe("a grpc-go client without the proto files, as grpcurl works", () => {
  it("lists the services through v1alpha reflection, builds every file it is sent, and calls an RPC", async () => {
    const called = await grpcGo([
      "call",
      "-address",
      new URL(server.url).host,
      "-method",
      "fastpubsub.v1.TopicService/CreateTopic",
      "-data",
      '{"id": "go-reflected"}',
    ]);
    expect(called.stderr).toBe("");
    const [services, ...answer] = called.stdout.split("\n");
    expect(services?.split(" ")).toContain("fastpubsub.v1.TopicService");
    expect(JSON.parse(answer.join("\n"))).toMatchObject({ id: "go-reflected" });
  });
});
