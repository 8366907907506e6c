import { randomInt } from "node:crypto";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { decodeJwt, SignJWT } from "jose";
import pg from "pg";
import { Agent, type Dispatcher } from "undici";
import { afterAll, beforeAll, describe, it } from "vitest";
import { createDatabasePool } from "../../src/db/pool.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { databaseChecksum } from "../support/db.ts";
import {
  type Case,
  caseArb,
  type FuzzProtocol,
  fuzzProtocols,
  type HttpRequest,
  Nested,
  Overflow,
  Pooled,
  type Pools,
  requestOf,
  type TokenKind,
  verdictOf,
} from "../support/fuzz.ts";
import { type Api, createApi } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * Property-based fuzzing of every RPC over REST, Connect JSON, Connect binary
 * and gRPC-Web, on a server without authentication and one with it. For any
 * request: no 5xx (nor a Connect or gRPC code that stands for one), an answer
 * within answerBoundMs, and after any 4xx every table as it was.
 *
 * `npm test` runs a few hundred cases with a fixed seed; `npm run test:fuzz`
 * runs FASTPUBSUB_FUZZ_RUNS cases with a random seed, or FASTPUBSUB_FUZZ_SEED.
 */

const explicitRuns = process.env.FASTPUBSUB_FUZZ_RUNS;
const runs = Number(explicitRuns ?? 400);
const fuzzSeed = Number(process.env.FASTPUBSUB_FUZZ_SEED ?? (explicitRuns ? randomInt(2 ** 31) : 20_261_128));
const answerBoundMs = 10_000;
// Seeded data is topped up every so many cases, as the fuzzer deletes and consumes it.
const reseedEvery = 25;

// No background job may change a table between two checksums.
const quiet = {
  FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: "0",
  FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: "0",
  FASTPUBSUB_EXPIRE_LEASES_INTERVAL_SECONDS: "0",
  FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS: "0",
};
const secretKey = "fuzz-key-6c1f0e2d9b8a7f6e5d4c3b2a1f0e9d8c";

/** A server under fuzzing, with what the cases draw on. */
interface Target {
  server: TestServer;
  db: pg.Client;
  /** Calls as an administrator, to seed. */
  api: Api;
  pools: Pools;
  tokens: Partial<Record<TokenKind, string>>;
  /** Clients the cases may change or delete; the tokens' clients are kept out of reach. */
  victims: string[];
  casesSinceSeed: number;
}

let open: Target;
let auth: Target;
const agent = new Agent({ keepAliveTimeout: 10_000, connections: 8 });

const figures = {
  cases: 0,
  byTarget: { open: 0, auth: 0 },
  byProtocol: Object.fromEntries(fuzzProtocols.map((protocol) => [protocol, 0])) as Record<FuzzProtocol, number>,
  statuses: Object.fromEntries(fuzzProtocols.map((protocol) => [protocol, {}])) as Record<FuzzProtocol, Record<string, number>>,
  serverErrors: 0,
  hangs: 0,
  changedOn4xx: 0,
  malformed: 0,
  slowestMs: 0,
};

async function startTarget(env: Record<string, string>): Promise<Target> {
  const server = await startTestServer({ ...quiet, ...env });
  const db = new pg.Client({ connectionString: server.databaseUrl });
  await db.connect();
  const empty = { topic: [], subscription: [], message: [], client: [] };
  return { server, db, api: createApi("connect-json", server.url), pools: empty, tokens: {}, victims: [], casesSinceSeed: reseedEvery };
}

/** Gives the auth server an administrator made as the CLI makes one, and a token of every kind the cases use. */
async function issueTokens(target: Target) {
  const pool = await createDatabasePool(target.server.databaseUrl, { maxPoolSize: 1 });
  const admin = await registerClient(pool, { name: "fuzz admin", scopes: "*" });
  await pool.end();
  const tokenOf = async (credentials: { id: string; secret: string }) =>
    (await createApi("connect-json", target.server.url).auth.createToken({ clientId: credentials.id, clientSecret: credentials.secret }))
      .accessToken;
  const adminToken = await tokenOf(admin);
  target.api = createApi("connect-json", target.server.url, { authorization: `Bearer ${adminToken}` });
  const client = async (scopes: string) => {
    const credentials = await target.api.clients.createClient({ name: `fuzz ${scopes}`, scopes });
    return { ...credentials, token: await tokenOf(credentials) };
  };
  const narrow = await client("topics:read subscriptions:consume:fz-s1");
  const disabled = await client("*");
  await target.api.clients.updateClient({ id: disabled.id, name: "fuzz disabled", scopes: "*", isActive: false });
  const deleted = await client("*");
  await target.api.clients.deleteClient({ id: deleted.id });
  const claims = decodeJwt(adminToken);
  const now = Math.floor(Date.now() / 1000);
  const sign = (key: string, expiresAt: number) =>
    new SignJWT({ scope: claims.scope, ver: claims.ver })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(admin.id)
      .setIssuedAt(now - 7200)
      .setExpirationTime(expiresAt)
      .sign(new TextEncoder().encode(key));
  target.tokens = {
    admin: adminToken,
    narrow: narrow.token,
    disabled: disabled.token,
    deleted: deleted.token,
    expired: await sign(secretKey, now - 3600),
    forged: await sign("another key", now + 3600),
  };
}

const topicIds = ["fz-t1", "fz-t2"];
const subscriptions = [
  { id: "fz-s1", topicId: "fz-t1" },
  { id: "fz-s2", topicId: "fz-t1", filter: fromJson(ValueSchema, { kind: ["a", "b"], n: [1, true] }) },
  { id: "fz-dlq", topicId: "fz-t2", maxDeliveryAttempts: 1 },
];

/** Creates what the fuzzer may have deleted, publishes, delivers and dead-letters a few messages, and refills the pools. */
async function seed(target: Target) {
  const { api } = target;
  const unlessExisting = (error: unknown) => {
    if (ConnectError.from(error).code !== Code.AlreadyExists) throw error;
  };
  for (const id of topicIds) await api.topics.createTopic({ id }).catch(unlessExisting);
  for (const subscription of subscriptions) await api.subscriptions.createSubscription(subscription).catch(unlessExisting);
  await api.topics.publishMessages({
    topicId: "fz-t1",
    messages: [{ kind: "a", n: 1 }, { kind: "c" }, { text: "nul\0" }, { kind: "b\0" }],
  });
  await api.topics.publishMessages({ topicId: "fz-t2", messages: [{ x: 1 }, { x: 2 }] });
  const delivered = await api.subscriptions.consumeMessages({ subscriptionId: "fz-s1", consumerId: "fz", batchSize: 2 });
  const dying = await api.subscriptions.consumeMessages({ subscriptionId: "fz-dlq", consumerId: "fz", batchSize: 1 });
  await api.subscriptions.nackMessages({ subscriptionId: "fz-dlq", messageIds: dying.data.map((message) => message.id) });
  const dead = await api.subscriptions.listDlqMessages({ subscriptionId: "fz-dlq", limit: 100 });
  const victims: string[] = [];
  for (const id of target.victims) {
    const kept = await api.clients.getClient({ id }).then(
      () => true,
      () => false,
    );
    if (kept) victims.push(id);
  }
  while (victims.length < 2) victims.push((await api.clients.createClient({ name: "fuzz victim", scopes: "topics:read" })).id);
  target.victims = victims;
  target.pools = {
    topic: topicIds,
    subscription: subscriptions.map((subscription) => subscription.id),
    message: [...delivered.data, ...dead.data].map((message) => message.id),
    client: victims,
  };
  target.casesSinceSeed = 0;
}

/** Sends a request and reads the whole answer, or reports that none came within answerBoundMs. */
async function exchange(base: string, request: HttpRequest) {
  const started = performance.now();
  try {
    const response = await agent.request({
      origin: base,
      path: request.path,
      method: request.method as Dispatcher.HttpMethod,
      headers: request.headers,
      body: request.body,
      headersTimeout: answerBoundMs,
      bodyTimeout: answerBoundMs,
      signal: AbortSignal.timeout(answerBoundMs),
    });
    const body = new Uint8Array(await response.body.arrayBuffer());
    const headers = new Headers();
    for (const [name, value] of Object.entries(response.headers)) if (value !== undefined) headers.set(name, String(value));
    return { status: response.statusCode, headers, body, ms: performance.now() - started };
  } catch (error) {
    const elapsed = performance.now() - started;
    if (elapsed >= answerBoundMs - 50) return { hang: true as const, ms: elapsed };
    throw new Error(`no answer (${(error as Error).message}) to ${describeRequest(request)}`);
  }
}

function describeRequest(request: HttpRequest) {
  const body = request.body ? new TextDecoder().decode(request.body.subarray(0, 300)) : "";
  return `${request.method} ${request.path.slice(0, 300)} ${JSON.stringify(request.headers)} ${JSON.stringify(body)}${(request.body?.length ?? 0) > 300 ? "…" : ""}`;
}

/** The last requests answered, in case a later one hangs on a connection they left. */
const recent: string[] = [];

/** Runs one case and throws when the answer breaks a property. */
async function check(fuzzCase: Case) {
  const target = fuzzCase.target === "auth" ? auth : open;
  if (target.casesSinceSeed++ >= reseedEvery) await seed(target);
  const request = requestOf(fuzzCase, target.pools, target.tokens);
  const before = await databaseChecksum(target.db);
  const answer = await exchange(target.server.url, request);
  figures.cases++;
  figures.byTarget[fuzzCase.target]++;
  figures.byProtocol[fuzzCase.protocol]++;
  figures.slowestMs = Math.max(figures.slowestMs, answer.ms);
  if ("hang" in answer) {
    figures.hangs++;
    // A connection left in a bad state by an earlier request hangs a later one: name them too.
    throw new Error(`no answer within ${answerBoundMs} ms to ${describeRequest(request)}; before it:\n${recent.join("\n")}`);
  }
  recent.push(`${fuzzCase.target}: ${describeRequest(request)} → ${answer.status}`);
  if (recent.length > 3) recent.shift();
  const verdict = verdictOf(fuzzCase, request, answer.status, answer.headers, answer.body);
  const statuses = figures.statuses[fuzzCase.protocol];
  statuses[verdict.label] = (statuses[verdict.label] ?? 0) + 1;
  const text = new TextDecoder().decode(answer.body.subarray(0, 500));
  if (verdict.serverError) {
    figures.serverErrors++;
    throw new Error(`${verdict.label} ${text} for ${describeRequest(request)}`);
  }
  if (verdict.malformed) {
    figures.malformed++;
    throw new Error(`${verdict.malformed} for ${describeRequest(request)}`);
  }
  if (verdict.refused) {
    const after = await databaseChecksum(target.db);
    const changed = Object.keys(after).filter((table) => after[table] !== before[table]);
    if (changed.length > 0) {
      figures.changedOn4xx++;
      throw new Error(`${verdict.label} ${text}, yet ${changed.join(", ")} changed, for ${describeRequest(request)}`);
    }
  }
}

beforeAll(async () => {
  [open, auth] = await Promise.all([
    startTarget({}),
    startTarget({ FASTPUBSUB_AUTH_ENABLED: "true", FASTPUBSUB_AUTH_SECRET_KEY: secretKey }),
  ]);
  await issueTokens(auth);
});

afterAll(async () => {
  const lines = [
    `fuzz: seed ${fuzzSeed}, ${figures.cases} cases (open ${figures.byTarget.open}, auth ${figures.byTarget.auth}; ${fuzzProtocols
      .map((protocol) => `${protocol} ${figures.byProtocol[protocol]}`)
      .join(", ")})`,
    ...fuzzProtocols.map((protocol) => `fuzz: ${protocol} answers ${JSON.stringify(sorted(figures.statuses[protocol]))}`),
    `fuzz: ${figures.serverErrors} 5xx, ${figures.hangs} hangs, ${figures.changedOn4xx} changed on 4xx, ${figures.malformed} malformed errors; slowest answer ${Math.round(figures.slowestMs)} ms`,
  ];
  console.log(lines.join("\n"));
  await agent.close();
  for (const target of [open, auth]) {
    await target?.db.end();
    await target?.server.close();
  }
});

function sorted(counts: Record<string, number>) {
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

/** A plain case, which each regression below changes where it matters. */
const plain: Case = {
  target: "open",
  token: "admin",
  protocol: "rest",
  rpc: "TopicService.GetTopic",
  message: {},
  body: { kind: "message" },
  rawPath: false,
  extraQuery: [],
  damage: "none",
  bom: false,
};

/** Cases that found defects, run first on every run; fast-check found the last six. */
const regressions: Case[] = [
  // U+0000 in a path id reached PostgreSQL: 500.
  { ...plain, message: { id: "a\0" } },
  // A payload holding U+0000 met a subscription filter (fz-s2 filters on kind) in publish_messages: 500.
  { ...plain, rpc: "TopicService.PublishMessages", message: { topic_id: new Pooled("topic", 0), messages: [{ kind: "b\0" }] } },
  // A payload nested 10,000 deep went through REST unchecked: 500.
  { ...plain, rpc: "TopicService.PublishMessages", message: { topic_id: new Pooled("topic", 0), messages: [{ a: new Nested(10_000) }] } },
  // A body that is not protobuf binary was internal (500), past a deadline too.
  { ...plain, protocol: "connect-binary", rpc: "ClientService.ListClients", body: { kind: "text", text: "툑组놵힬鮉䴥ꨠ" }, timeout: "0" },
  // A gRPC-Web message, and a REST body, over readMaxBytes left the rest of their body on
  // the connection, where the next request (the case after each) waited forever.
  { ...plain, protocol: "grpc-web", rpc: "TopicService.PublishMessages", body: { kind: "oversize" } },
  { ...plain, protocol: "connect-binary", rpc: "SubscriptionService.ListSubscriptions", message: { offset: 1, limit: 99 } },
  {
    ...plain,
    rpc: "SubscriptionService.AckMessages",
    message: { subscription_id: new Pooled("subscription", 2) },
    body: { kind: "oversize" },
  },
  {
    ...plain,
    protocol: "connect-binary",
    rpc: "SubscriptionService.ConsumeMessages",
    message: { subscription_id: new Pooled("subscription", 0), consumer_id: "w1" },
  },
  // Binary under a JSON content type: JSON.parse's message quoted it cut inside a surrogate
  // pair, which gRPC-Web could not percent-encode in grpc-message: 500.
  { ...plain, protocol: "grpc-web", message: { id: "󃴵󺸆񁓽򍞺񰱹𾱨򏪞񷳈񾀢𡏾" }, contentType: "application/grpc-web+json" },
  // A filter with a number JSON.parse reads as infinity was a 500; in a payload it became null.
  {
    ...plain,
    protocol: "connect-binary",
    rpc: "SubscriptionService.CreateSubscription",
    message: { id: "fz-infinite", topic_id: new Pooled("topic", 0), filter: { a: [new Overflow(false)] } },
  },
  // A body that its content-encoding (br) cannot decompress was internal (500) once compression was accepted.
  { ...plain, protocol: "connect-binary", rpc: "TopicService.GetTopic", message: { id: "fz-t2" }, contentEncoding: "br-lie" },
];

describe("any request, over every protocol, with and without authentication", () => {
  it(
    `is answered within ${answerBoundMs / 1000} s, never with a server error, and changes nothing when refused (seed ${fuzzSeed}, ${runs} cases)`,
    async () => {
      await fc.assert(fc.asyncProperty(caseArb, check), {
        numRuns: runs,
        seed: fuzzSeed,
        endOnFailure: true,
        examples: regressions.map((fuzzCase) => [fuzzCase]),
      });
    },
    Math.max(120_000, runs * 300),
  );
});
