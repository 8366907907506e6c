import { Code, ConnectError } from "@connectrpc/connect";
import { decodeJwt, SignJWT } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listenerName } from "../../src/db/notifications.ts";
import { createDatabasePool } from "../../src/db/pool.ts";
import { services } from "../../src/server/routes.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { expectCode } from "../support/expect-code.ts";
import { uniqueId } from "../support/ids.ts";
import { type Api, createApi } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";

const secretKey = "test-key-3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c";
const authEnv = { FASTPUBSUB_AUTH_ENABLED: "true", FASTPUBSUB_AUTH_SECRET_KEY: secretKey };

let server: TestServer;
let other: TestServer;
let db: Awaited<ReturnType<typeof createDatabasePool>>;

beforeAll(async () => {
  server = await startTestServer(authEnv);
  // A second server on the same database, to see revocations cross processes.
  const { startServer } = await import("../../src/server/server.ts");
  const { createLogger } = await import("../../src/logger.ts");
  const config = { ...server.config, apiPort: 0 };
  other = {
    ...(await startServer(config, createLogger({ level: "critical", format: "%(message)s" }))),
    databaseUrl: server.databaseUrl,
    config,
  };
  db = await createDatabasePool(server.databaseUrl, { maxPoolSize: 2 });
});
afterAll(async () => {
  await Promise.all([server.close(), other.close()]);
  await db.end();
});

/** Posts to /oauth/token and returns the status and JSON body. */
async function requestToken(clientId: string, clientSecret: string) {
  const response = await fetch(new URL("/oauth/token", server.url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_id: clientId, client_secret: clientSecret }),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

/** Registers a client with `scopes` and returns its credentials and a token. */
async function client(scopes: string) {
  const credentials = await registerClient(db, { name: `client ${scopes}`, scopes });
  const answer = await requestToken(credentials.id, credentials.secret);
  return { ...credentials, token: answer.json.access_token as string };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/**
 * Calls until the call is refused as unauthenticated, for up to two seconds,
 * and returns the reason: another server learns of a revocation through
 * PostgreSQL's NOTIFY, within milliseconds but not in the same instant.
 */
async function refusedSoon(call: () => Promise<unknown>): Promise<string> {
  const error = await waitFor(
    () =>
      call().then(
        () => undefined,
        (reason: unknown) => ConnectError.from(reason),
      ),
    2_000,
    "the revoked token to be refused",
  );
  expect(Code[error.code]).toBe(Code[Code.Unauthenticated]);
  return error.rawMessage;
}

describe("POST /oauth/token", () => {
  it("exchanges client credentials for a signed token with the seed's claims, with 201", async () => {
    const { id, secret } = await registerClient(db, { name: "Token Client", scopes: "topics:read topics:publish:orders" });
    const before = Math.floor(Date.now() / 1000);
    const answer = await requestToken(id, secret);
    expect(answer.status).toBe(201);
    expect(Object.keys(answer.json).sort()).toEqual(["access_token", "expires_in", "scope", "token_type"]);
    expect(answer.json).toMatchObject({ token_type: "Bearer", expires_in: 1800, scope: "topics:read topics:publish:orders" });
    const claims = decodeJwt(answer.json.access_token as string);
    expect(claims).toMatchObject({ sub: id, scope: "topics:read topics:publish:orders", ver: 1 });
    expect(claims.iat).toBeGreaterThanOrEqual(before - 5);
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(1800);
  });

  it.each([
    ["an unknown client", async () => ["0190b3a2-7c4e-7000-8000-000000000001", "whatever"], "Client not found"],
    ["a wrong secret", async () => [(await client("*")).id, "not-the-secret"], "Client secret is invalid"],
  ])("answers 401 for %s", async (_, credentials, detail) => {
    const [id, secret] = await credentials();
    expect(await requestToken(id as string, secret as string)).toEqual({ status: 401, json: { detail } });
  });

  it("answers 401 for a disabled client's right secret", async () => {
    const disabled = await registerClient(db, { name: "off", scopes: "*", isActive: false });
    expect(await requestToken(disabled.id, disabled.secret)).toEqual({ status: 401, json: { detail: "Client disabled" } });
  });

  it.each([
    ["a client_id that is no UUID", { client_id: "client-1", client_secret: "x" }],
    ["no client_secret", { client_id: "0190b3a2-7c4e-7000-8000-000000000001" }],
  ])("answers 422 for %s", async (_, body) => {
    const response = await fetch(new URL("/oauth/token", server.url), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(422);
  });
});

describe("POST /oauth/token as OAuth2 client-credentials libraries send it", () => {
  /** Posts a form-encoded body, with `headers`, and returns the status, the JSON body and the WWW-Authenticate header. */
  async function postForm(fields: Record<string, string>, headers: Record<string, string> = {}) {
    const response = await fetch(new URL("/oauth/token", server.url), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded;charset=UTF-8", ...headers },
      body: new URLSearchParams(fields),
    });
    return {
      status: response.status,
      json: (await response.json()) as Record<string, unknown>,
      challenge: response.headers.get("www-authenticate"),
    };
  }
  /** The HTTP Basic header of RFC 6749 section 2.3.1: the id and the secret each form-encoded, then joined and base64-encoded. */
  const basic = (id: string, secret: string) => ({
    authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`,
  });

  it("issues a token for a form body with grant_type=client_credentials and the credentials in it", async () => {
    const { id, secret } = await registerClient(db, { name: "form", scopes: "topics:read" });
    const answer = await postForm({ grant_type: "client_credentials", client_id: id, client_secret: secret });
    expect(answer).toMatchObject({ status: 201, json: { token_type: "Bearer", expires_in: 1800, scope: "topics:read" } });
    const token = answer.json.access_token as string;
    expect((await createApi("rest", server.url, bearer(token)).topics.listTopics({})).data).toBeDefined();
  });

  it("issues a token for the credentials sent by HTTP Basic, over every protocol", async () => {
    const { id, secret } = await registerClient(db, { name: "basic", scopes: "topics:read" });
    const answer = await postForm({ grant_type: "client_credentials" }, basic(id, secret));
    expect(answer).toMatchObject({ status: 201, json: { token_type: "Bearer", scope: "topics:read" } });
    expect(decodeJwt(answer.json.access_token as string).sub).toBe(id);
    // The client id may also stay in the body, as some libraries send it.
    expect((await postForm({ grant_type: "client_credentials", client_id: id }, basic(id, secret))).status).toBe(201);
    for (const protocol of ["grpc", "connect-json", "grpc-web"] as const) {
      const issued = await createApi(protocol, server.url, basic(id, secret)).auth.createToken({ grantType: "client_credentials" });
      expect(decodeJwt(issued.accessToken).sub).toBe(id);
    }
  });

  it("still takes the seed's JSON body, with or without grant_type", async () => {
    const { id, secret } = await registerClient(db, { name: "json", scopes: "*" });
    expect((await requestToken(id, secret)).status).toBe(201);
    const response = await fetch(new URL("/oauth/token", server.url), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ grant_type: "client_credentials", client_id: id, client_secret: secret }),
    });
    expect(response.status).toBe(201);
  });

  it("refuses a grant type other than client_credentials with 422, and invalid_argument over RPC", async () => {
    const { id, secret } = await registerClient(db, { name: "grant", scopes: "*" });
    for (const grant of ["password", "authorization_code", "refresh_token"]) {
      const answer = await postForm({ grant_type: grant, client_id: id, client_secret: secret, username: "u", password: "p" });
      expect(answer.status).toBe(422);
      expect(answer.json.detail).toMatch(/^grant_type must be client_credentials/);
    }
    const rpc = createApi("connect-json", server.url).auth.createToken({ grantType: "password", clientId: id, clientSecret: secret });
    expect((await expectCode(rpc, Code.InvalidArgument)).rawMessage).toMatch(/^grant_type must be client_credentials/);
  });

  it.each([
    ["no credentials at all", {}, {}, "client_id is required, in the request or by HTTP Basic"],
    ["no secret", { client_id: "0190b3a2-7c4e-7000-8000-000000000001" }, {}, "client_secret is required, in the request or by HTTP Basic"],
    ["a client_id that is no UUID", { client_id: "client-1", client_secret: "x" }, {}, "client_id must be a UUID"],
    [
      "Basic credentials without a colon",
      {},
      { authorization: `Basic ${Buffer.from("nocolon").toString("base64")}` },
      "the Basic credentials must be client_id:client_secret",
    ],
    [
      "a secret both by Basic and in the body",
      { client_secret: "x" },
      basic("0190b3a2-7c4e-7000-8000-000000000001", "y"),
      "send the client's credentials either by HTTP Basic or in the request, not both",
    ],
  ])("answers 422 for %s", async (_, fields, headers, detail) => {
    expect(await postForm({ grant_type: "client_credentials", ...fields }, headers)).toEqual({
      status: 422,
      json: { detail },
      challenge: null,
    });
  });

  it("answers 401 with a Bearer challenge, after a Basic one when the client used HTTP Basic", async () => {
    const { id } = await registerClient(db, { name: "wrong", scopes: "*" });
    expect(await postForm({ grant_type: "client_credentials", client_id: id, client_secret: "wrong" })).toEqual({
      status: 401,
      json: { detail: "Client secret is invalid" },
      challenge: 'Bearer realm="fastpubsub"',
    });
    expect(await postForm({ grant_type: "client_credentials" }, basic(id, "wrong"))).toEqual({
      status: 401,
      json: { detail: "Client secret is invalid" },
      challenge: 'Basic realm="fastpubsub", Bearer realm="fastpubsub"',
    });
  });
});

describe.each(["rest", "grpc", "connect-json", "grpc-web"] as const)("an authenticated call over %s", (protocol) => {
  const topics = (headers: Record<string, string> = {}) => createApi(protocol, server.url, headers).topics;

  it("is refused as unauthenticated without a token or with a malformed one", async () => {
    for (const headers of [{}, { authorization: "Bearer" }, { authorization: "Basic dXNlcjpwYXNz" }, bearer("not.a.jwt")]) {
      const error = await expectCode(topics(headers).listTopics({}), Code.Unauthenticated);
      expect(error.rawMessage).toBe("Invalid jwt token");
    }
  });

  it("is refused with a WWW-Authenticate Bearer challenge, saying invalid_token when a token was refused", async () => {
    const missing = await expectCode(topics().listTopics({}), Code.Unauthenticated);
    expect(missing.metadata.get("www-authenticate")).toBe('Bearer realm="fastpubsub"');
    const refused = await expectCode(topics(bearer("not.a.jwt")).listTopics({}), Code.Unauthenticated);
    expect(refused.metadata.get("www-authenticate")).toBe(
      'Bearer realm="fastpubsub", error="invalid_token", error_description="Invalid jwt token"',
    );
    const admin = await client("*");
    const subject = await client("topics:read");
    await createApi("rest", server.url, bearer(admin.token)).clients.deleteClient({ id: subject.id });
    const revoked = await expectCode(topics(bearer(subject.token)).listTopics({}), Code.Unauthenticated);
    expect(revoked.metadata.get("www-authenticate")).toBe(
      `Bearer realm="fastpubsub", error="invalid_token", error_description="${revoked.rawMessage}"`,
    );
  });

  it("is refused as unauthenticated with a tampered, expired, foreign or unsigned token", async () => {
    const { token, id } = await client("*");
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const tampered = `${header}.${Buffer.from(JSON.stringify({ ...decodeJwt(token), scope: "* clients:create", ver: 99 })).toString("base64url")}.${signature}`;
    const signatureBytes = Buffer.from(signature, "base64url");
    signatureBytes[0] = (signatureBytes[0] ?? 0) ^ 1;
    const flipped = `${header}.${payload}.${signatureBytes.toString("base64url")}`;
    const key = new TextEncoder().encode(secretKey);
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ scope: "*", ver: 1 })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(id)
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(key);
    const otherAlgorithm = await new SignJWT({ scope: "*", ver: 1 })
      .setProtectedHeader({ alg: "HS512" })
      .setSubject(id)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(key);
    const otherKey = await new SignJWT({ scope: "*", ver: 1 })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(id)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode("another-key-entirely-0000000000000"));
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    for (const bad of [tampered, flipped, expired, otherAlgorithm, otherKey, unsigned]) {
      const error = await expectCode(topics(bearer(bad)).listTopics({}), Code.Unauthenticated);
      expect(error.rawMessage).toBe("Invalid jwt token");
    }
    expect((await topics(bearer(token)).listTopics({})).data).toBeDefined();
  });

  it("is refused once the client is updated, disabled or deleted, on every server at once", async () => {
    const admin = await client("*");
    const subject = await client("topics:read");
    const elsewhere = createApi(protocol, other.url, bearer(subject.token)).topics;
    await elsewhere.listTopics({});
    const clients = createApi("rest", server.url, bearer(admin.token)).clients;
    await clients.updateClient({ id: subject.id, name: "renamed", scopes: "topics:read" });
    expect((await expectCode(topics(bearer(subject.token)).listTopics({}), Code.Unauthenticated)).rawMessage).toBe("Token revoked");
    expect(await refusedSoon(() => elsewhere.listTopics({}))).toBe("Token revoked");

    const renewed = (await requestToken(subject.id, subject.secret)).json.access_token as string;
    const renewedElsewhere = createApi(protocol, other.url, bearer(renewed)).topics;
    await renewedElsewhere.listTopics({});
    await clients.updateClient({ id: subject.id, name: "renamed", scopes: "topics:read", isActive: false });
    expect(await refusedSoon(() => renewedElsewhere.listTopics({}))).toMatch(/^(Token revoked|Client disabled)$/);

    const doomed = await client("topics:read");
    const doomedElsewhere = createApi(protocol, other.url, bearer(doomed.token)).topics;
    await doomedElsewhere.listTopics({});
    await clients.deleteClient({ id: doomed.id });
    expect(await refusedSoon(() => doomedElsewhere.listTopics({}))).toBe("Client not found");
  });
});

describe("revocation when the notification connection drops", () => {
  it("is still immediate: tokens are checked against the database until it is back", async () => {
    const admin = await client("*");
    const subject = await client("topics:read");
    const elsewhere = createApi("rest", other.url, bearer(subject.token)).topics;
    await elsewhere.listTopics({});
    const killer = new pg.Client({ connectionString: server.databaseUrl });
    await killer.connect();
    const { rowCount } = await killer.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
      [listenerName],
    );
    await killer.end();
    expect(rowCount).toBe(2);
    await createApi("rest", server.url, bearer(admin.token)).clients.updateClient({ id: subject.id, name: "x", scopes: "topics:read" });
    expect(await refusedSoon(() => elsewhere.listTopics({}))).toBe("Token revoked");
    const renewed = (await requestToken(subject.id, subject.secret)).json.access_token as string;
    expect((await createApi("rest", other.url, bearer(renewed)).topics.listTopics({})).data).toBeDefined();
  });
});

describe("the open paths", () => {
  it.each(["/liveness", "/readiness"])("answer %s without a token", async (path) => {
    expect((await fetch(new URL(path, server.url))).status).toBe(200);
  });
});

/** One RPC of the scope matrix: the scope it needs, a call, and whether the call names a resource. */
interface MatrixCase {
  rpc: string;
  scope: string;
  call: (api: Api, id: string) => Promise<unknown>;
  narrowable: boolean;
  /** A server-streaming RPC, which has no REST path. */
  streaming?: boolean;
}

/** Opens a stream and resolves with its first response, or rejects with the error it ends with. */
async function firstResponse(stream: AsyncIterable<unknown>) {
  for await (const response of stream) return response;
  return undefined;
}

const matrix: MatrixCase[] = [
  { rpc: "CreateTopic", scope: "topics:create", narrowable: false, call: (api) => api.topics.createTopic({ id: uniqueId("m") }) },
  { rpc: "GetTopic", scope: "topics:read", narrowable: true, call: (api, id) => api.topics.getTopic({ id }) },
  { rpc: "ListTopics", scope: "topics:read", narrowable: false, call: (api) => api.topics.listTopics({}) },
  { rpc: "DeleteTopic", scope: "topics:delete", narrowable: true, call: (api, id) => api.topics.deleteTopic({ id }) },
  {
    rpc: "PublishMessages",
    scope: "topics:publish",
    narrowable: true,
    call: (api, id) => api.topics.publishMessages({ topicId: id, messages: [{ a: 1 }] }),
  },
  {
    rpc: "CreateSubscription",
    scope: "subscriptions:create",
    narrowable: false,
    call: (api) => api.subscriptions.createSubscription({ id: uniqueId("m"), topicId: "t" }),
  },
  { rpc: "GetSubscription", scope: "subscriptions:read", narrowable: true, call: (api, id) => api.subscriptions.getSubscription({ id }) },
  { rpc: "ListSubscriptions", scope: "subscriptions:read", narrowable: false, call: (api) => api.subscriptions.listSubscriptions({}) },
  {
    rpc: "UpdateSubscription",
    scope: "subscriptions:update",
    narrowable: true,
    call: (api, id) => api.subscriptions.updateSubscription({ id, ackDeadlineSeconds: 30 }),
  },
  {
    rpc: "DeleteSubscription",
    scope: "subscriptions:delete",
    narrowable: true,
    call: (api, id) => api.subscriptions.deleteSubscription({ id }),
  },
  {
    rpc: "ConsumeMessages",
    scope: "subscriptions:consume",
    narrowable: true,
    call: (api, id) => api.subscriptions.consumeMessages({ subscriptionId: id, consumerId: "w" }),
  },
  {
    rpc: "AckMessages",
    scope: "subscriptions:consume",
    narrowable: true,
    call: (api, id) => api.subscriptions.ackMessages({ subscriptionId: id, messageIds: [] }),
  },
  {
    rpc: "NackMessages",
    scope: "subscriptions:consume",
    narrowable: true,
    call: (api, id) => api.subscriptions.nackMessages({ subscriptionId: id, messageIds: [] }),
  },
  {
    rpc: "StreamMessages",
    scope: "subscriptions:consume",
    narrowable: true,
    streaming: true,
    call: (api, id) => firstResponse(api.subscriptions.streamMessages({ subscriptionId: id, consumerId: "w" })),
  },
  {
    rpc: "ModifyAckDeadline",
    scope: "subscriptions:consume",
    narrowable: true,
    call: (api, id) => api.subscriptions.modifyAckDeadline({ subscriptionId: id, messageIds: [], ackDeadlineSeconds: 30 }),
  },
  {
    rpc: "ListDlqMessages",
    scope: "subscriptions:consume",
    narrowable: true,
    call: (api, id) => api.subscriptions.listDlqMessages({ subscriptionId: id }),
  },
  {
    rpc: "ReprocessDlqMessages",
    scope: "subscriptions:consume",
    narrowable: true,
    call: (api, id) => api.subscriptions.reprocessDlqMessages({ subscriptionId: id, messageIds: [] }),
  },
  {
    rpc: "PurgeDlqMessages",
    scope: "subscriptions:consume",
    narrowable: true,
    call: (api, id) => api.subscriptions.purgeDlqMessages({ subscriptionId: id, all: true }),
  },
  {
    rpc: "GetSubscriptionMetrics",
    scope: "subscriptions:read",
    narrowable: true,
    call: (api, id) => api.subscriptions.getSubscriptionMetrics({ subscriptionId: id }),
  },
  {
    rpc: "CreateClient",
    scope: "clients:create",
    narrowable: false,
    call: (api) => api.clients.createClient({ name: "made", scopes: "topics:read" }),
  },
  { rpc: "GetClient", scope: "clients:read", narrowable: true, call: (api, id) => api.clients.getClient({ id }) },
  { rpc: "ListClients", scope: "clients:read", narrowable: false, call: (api) => api.clients.listClients({}) },
  {
    rpc: "UpdateClient",
    scope: "clients:update",
    narrowable: true,
    call: (api, id) => api.clients.updateClient({ id, name: "n", scopes: "topics:read" }),
  },
  { rpc: "DeleteClient", scope: "clients:delete", narrowable: true, call: (api, id) => api.clients.deleteClient({ id }) },
];

it("the scope matrix covers every RPC that needs a token", () => {
  const guarded = services.flatMap((service) =>
    service.methods.filter((method) => method.name !== "CreateToken").map((method) => method.name),
  );
  expect(matrix.map((row) => row.rpc).sort()).toEqual(guarded.sort());
});

/** Resolves to the call's code: Ok when it succeeded, else its error's code. */
async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

describe.each(["rest", "grpc"] as const)("the scope matrix over %s", (protocol) => {
  const rows = protocol === "rest" ? matrix.filter((row) => !row.streaming) : matrix;
  const tokens = new Map<string, string>();
  const tokenFor = async (scopes: string) => {
    if (!tokens.has(scopes)) tokens.set(scopes, (await client(scopes)).token);
    return tokens.get(scopes) as string;
  };
  // Resource ids that name a client must be UUIDs; others are topic or subscription ids.
  const resourceId = (rpc: string) => (rpc.endsWith("Client") ? "0190b3a2-7c4e-7000-8000-0000000000aa" : "res-a");
  const otherId = (rpc: string) => (rpc.endsWith("Client") ? "0190b3a2-7c4e-7000-8000-0000000000bb" : "res-b");

  it.each(rows)(
    "lets $rpc through with * and with $scope, and refuses other scopes with permission_denied",
    async ({ rpc, scope, call }) => {
      for (const granted of ["*", scope, `topics:read ${scope} clients:read`]) {
        const api = createApi(protocol, server.url, bearer(await tokenFor(granted)));
        const code = await codeOf(call(api, resourceId(rpc)));
        expect([Code.Unauthenticated, Code.PermissionDenied], `${rpc} with ${granted}`).not.toContain(code);
      }
      const [resource, action] = scope.split(":") as [string, string];
      const wrongAction =
        resource === "clients"
          ? `${resource}:${action === "read" ? "delete" : "read"}`
          : `${resource}:${action === "read" ? "create" : "read"}`;
      for (const refused of [
        wrongAction,
        resource === "topics" ? `subscriptions:${action === "publish" ? "consume" : action}` : `topics:${action}`,
      ]) {
        const api = createApi(protocol, server.url, bearer(await tokenFor(refused)));
        const error = await expectCode(call(api, resourceId(rpc)) as Promise<unknown>, Code.PermissionDenied);
        expect(error.rawMessage, `${rpc} with ${refused}`).toBe("Insufficient scope");
      }
    },
  );

  it.each(rows.filter((row) => row.narrowable))(
    "lets $rpc through with $scope narrowed to its resource, and not to another",
    async ({ rpc, scope, call }) => {
      const api = createApi(protocol, server.url, bearer(await tokenFor(`${scope}:${resourceId(rpc)}`)));
      expect([Code.Unauthenticated, Code.PermissionDenied]).not.toContain(await codeOf(call(api, resourceId(rpc))));
      const error = await expectCode(call(api, otherId(rpc)) as Promise<unknown>, Code.PermissionDenied);
      expect(error.rawMessage).toBe("Insufficient scope");
    },
  );

  it.each(rows.filter((row) => !row.narrowable))(
    "does not let $rpc through with a scope narrowed to some resource",
    async ({ scope, call }) => {
      const api = createApi(protocol, server.url, bearer(await tokenFor(`${scope}:res-a`)));
      await expectCode(call(api, "res-a") as Promise<unknown>, Code.PermissionDenied);
    },
  );

  it("lets a narrowed publisher publish to its topic and nothing else", async () => {
    const admin = createApi(protocol, server.url, bearer(await tokenFor("*")));
    const topicId = uniqueId("orders");
    await admin.topics.createTopic({ id: topicId });
    const publisher = createApi(protocol, server.url, bearer(await tokenFor(`topics:publish:${topicId}`)));
    await publisher.topics.publishMessages({ topicId, messages: [{ n: 1 }] });
    await expectCode(publisher.topics.publishMessages({ topicId: `${topicId}-other`, messages: [{ n: 1 }] }), Code.PermissionDenied);
    await expectCode(publisher.topics.getTopic({ id: topicId }), Code.PermissionDenied);
  });
});
