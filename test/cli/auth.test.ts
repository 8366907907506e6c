import { beforeAll, describe, expect, it } from "vitest";
import { runCli, startServerProcess } from "../support/cli.ts";
import { createTestDatabase } from "../support/server.ts";

describe("generate_secret_key", () => {
  it("prints a new 256-bit hex secret each time", async () => {
    const first = await runCli(["generate_secret_key"]);
    const second = await runCli(["generate_secret_key"]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^new_secret=[0-9a-f]{64}\n$/);
    expect(second.stdout).not.toBe(first.stdout);
  });
});

describe("create_client", () => {
  it("prints the new client's id and secret, which then get a token", async () => {
    const url = await createTestDatabase();
    const env = {
      FASTPUBSUB_DATABASE_URL: url,
      FASTPUBSUB_AUTH_ENABLED: "true",
      FASTPUBSUB_AUTH_SECRET_KEY: "cli-test-key-0123456789abcdef0123",
    };
    const made = await runCli(["create_client", "Admin Client", "*", "true"], env);
    expect(made.code).toBe(0);
    const match = /^client_id=([0-9a-f-]{36})\nclient_secret=([0-9a-f]{64})\n$/.exec(made.stdout);
    expect(match, made.stdout + made.stderr).not.toBeNull();
    const server = await startServerProcess({ ...env, FASTPUBSUB_LOG_LEVEL: "debug" });
    let accessToken = "";
    try {
      const token = await fetch(new URL("/oauth/token", server.url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ client_id: match?.[1], client_secret: match?.[2] }),
      });
      expect(token.status).toBe(201);
      const answer = (await token.json()) as { access_token: string; scope: string };
      accessToken = answer.access_token;
      expect(answer.scope).toBe("*");
      const topics = await fetch(new URL("/topics", server.url), { headers: { authorization: `Bearer ${accessToken}` } });
      expect(topics.status).toBe(200);
      expect((await fetch(new URL("/topics", server.url))).status).toBe(401);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    // The server has stopped and its log is read to the end: it logged the requests, and
    // neither the secret nor the token appears in any log line.
    expect(server.log()).toContain('"message":"request","method":"POST","route":"/oauth/token"');
    expect(accessToken).not.toBe("");
    expect(server.log()).not.toContain(match?.[2]);
    expect(server.log()).not.toContain(accessToken);
  });

  it("makes an active client with every scope when given only a name", async () => {
    const url = await createTestDatabase();
    const made = await runCli(["create_client", "Defaults"], { FASTPUBSUB_DATABASE_URL: url });
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/^client_id=.+\nclient_secret=.+\n$/);
  });

  describe("with arguments it refuses", () => {
    // The refusals need a database to name, not a fresh one each.
    let url: string;
    beforeAll(async () => {
      url = await createTestDatabase();
    });

    it.each([
      [
        ["create_client", "Bad", "topics:read subscriptions:update topics:fly", "true"],
        /^Error: scopes has an invalid scope "topics:fly"$/,
      ],
      [["create_client", " ", "*", "true"], /^Error: name must not be blank$/],
      [["create_client", "Bad", "*", "maybe"], /^Error: IS_ACTIVE must be true or false/],
      [["create_client"], /^Error: Missing 1 required arg/],
    ])("refuses %j with a one-line reason", async (args, reason) => {
      const { code, stdout, stderr } = await runCli(args, { FASTPUBSUB_DATABASE_URL: url });
      expect(code).not.toBe(0);
      expect(stdout).toBe("");
      expect(stderr.trim().split("\n").at(-1)).toMatch(reason);
    });
  });
});

describe("the server", () => {
  it("refuses to start with authentication on and no secret key, naming the variable", async () => {
    const { code, stderr } = await runCli(["server"], {
      FASTPUBSUB_AUTH_ENABLED: "true",
      FASTPUBSUB_DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/none",
    });
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/^Error: FASTPUBSUB_AUTH_SECRET_KEY: is required when FASTPUBSUB_AUTH_ENABLED is true/);
  });
});
