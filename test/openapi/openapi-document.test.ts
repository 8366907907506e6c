import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, createFileRegistry, type DescMessage, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CreateClientRequestSchema } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { CreateSubscriptionRequestSchema } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { CreateTopicRequestSchema } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { openApiDocument } from "../../src/openapi/openapi-document.ts";
import { validateMessage } from "../../src/server/interceptors/validation.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
const env = { ...process.env, PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH ?? ""}` };

type Schema = { $ref?: string; type?: string | string[]; [key: string]: unknown };
interface Operation {
  tags: string[];
  summary: string;
  description: string;
  operationId: string;
  security?: Record<string, string[]>[];
  parameters?: { name: string; in: string; required?: boolean; description?: string; schema: Schema }[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { $ref?: string; description?: string; content?: Record<string, { schema: Schema }> }>;
}
interface Document {
  openapi: string;
  info: { title: string; version: string; description: string };
  tags: { name: string; description?: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: {
    schemas: Record<string, Schema & { properties?: Record<string, Schema>; required?: string[]; description?: string }>;
    responses: Record<string, { content: Record<string, { schema: Schema }> }>;
    securitySchemes: Record<string, Record<string, string>>;
  };
}

/** One REST call of the API, written out by hand from the API's reference. */
interface Call {
  operationId: string;
  method: "get" | "post" | "put" | "patch" | "delete";
  path: string;
  status: "200" | "201" | "204";
  pathParams?: string[];
  query?: Record<string, "integer" | "string" | "boolean">;
  body?: "object" | "array";
}

const page = { offset: "integer", limit: "integer" } as const;
// The optional delivery settings, which a body of the whole request may leave to the query string.
const deliverySettings = {
  max_delivery_attempts: "integer",
  backoff_min_seconds: "integer",
  backoff_max_seconds: "integer",
  ack_deadline_seconds: "integer",
} as const;

const calls: Call[] = [
  {
    operationId: "CreateTopic",
    method: "post",
    path: "/topics",
    status: "201",
    query: { dedup_key: "string", dedup_window_seconds: "integer" },
    body: "object",
  },
  { operationId: "GetTopic", method: "get", path: "/topics/{id}", status: "200", pathParams: ["id"] },
  { operationId: "ListTopics", method: "get", path: "/topics", status: "200", query: page },
  { operationId: "DeleteTopic", method: "delete", path: "/topics/{id}", status: "204", pathParams: ["id"] },
  {
    operationId: "PublishMessages",
    method: "post",
    path: "/topics/{topic_id}/messages",
    status: "204",
    pathParams: ["topic_id"],
    query: { delay_seconds: "integer", deliver_at: "string" },
    body: "array",
  },
  {
    operationId: "CreateSubscription",
    method: "post",
    path: "/subscriptions",
    status: "201",
    query: { ...deliverySettings, ordering_key: "string" },
    body: "object",
  },
  { operationId: "GetSubscription", method: "get", path: "/subscriptions/{id}", status: "200", pathParams: ["id"] },
  { operationId: "ListSubscriptions", method: "get", path: "/subscriptions", status: "200", query: page },
  {
    operationId: "UpdateSubscription",
    method: "patch",
    path: "/subscriptions/{id}",
    status: "200",
    pathParams: ["id"],
    query: { ...deliverySettings, topic_id: "string" },
    body: "object",
  },
  { operationId: "DeleteSubscription", method: "delete", path: "/subscriptions/{id}", status: "204", pathParams: ["id"] },
  {
    operationId: "ConsumeMessages",
    method: "get",
    path: "/subscriptions/{subscription_id}/messages",
    status: "200",
    pathParams: ["subscription_id"],
    query: { consumer_id: "string", batch_size: "integer", wait_seconds: "integer" },
  },
  {
    operationId: "AckMessages",
    method: "post",
    path: "/subscriptions/{subscription_id}/acks",
    status: "204",
    pathParams: ["subscription_id"],
    query: { consumer_id: "string" },
    body: "array",
  },
  {
    operationId: "NackMessages",
    method: "post",
    path: "/subscriptions/{subscription_id}/nacks",
    status: "204",
    pathParams: ["subscription_id"],
    query: { consumer_id: "string", delay_seconds: "integer", dead_letter: "boolean", reason: "string" },
    body: "array",
  },
  {
    operationId: "ModifyAckDeadline",
    method: "post",
    path: "/subscriptions/{subscription_id}/modify-ack-deadline",
    status: "204",
    pathParams: ["subscription_id"],
    query: { consumer_id: "string" },
    body: "object",
  },
  {
    operationId: "ListDlqMessages",
    method: "get",
    path: "/subscriptions/{subscription_id}/dlq",
    status: "200",
    pathParams: ["subscription_id"],
    query: page,
  },
  {
    operationId: "ReprocessDlqMessages",
    method: "post",
    path: "/subscriptions/{subscription_id}/dlq/reprocess",
    status: "204",
    pathParams: ["subscription_id"],
    query: { all: "boolean" },
    body: "array",
  },
  {
    operationId: "PurgeDlqMessages",
    method: "post",
    path: "/subscriptions/{subscription_id}/dlq/purge",
    status: "204",
    pathParams: ["subscription_id"],
    query: { all: "boolean" },
    body: "array",
  },
  {
    operationId: "GetSubscriptionMetrics",
    method: "get",
    path: "/subscriptions/{subscription_id}/metrics",
    status: "200",
    pathParams: ["subscription_id"],
  },
  { operationId: "CreateClient", method: "post", path: "/clients", status: "201", query: { is_active: "boolean" }, body: "object" },
  { operationId: "GetClient", method: "get", path: "/clients/{id}", status: "200", pathParams: ["id"] },
  { operationId: "ListClients", method: "get", path: "/clients", status: "200", query: page },
  {
    operationId: "UpdateClient",
    method: "put",
    path: "/clients/{id}",
    status: "200",
    pathParams: ["id"],
    query: { is_active: "boolean" },
    body: "object",
  },
  { operationId: "DeleteClient", method: "delete", path: "/clients/{id}", status: "204", pathParams: ["id"] },
  { operationId: "CreateToken", method: "post", path: "/oauth/token", status: "201", body: "object" },
];

const healthPaths = ["/liveness", "/readiness", "/metrics"];

/** The comments of a proto file, keyed `service:Name`, `rpc:Name`, `message:Name` and `Message.field`. */
function protoComments(source: string): Map<string, string> {
  const comments = new Map<string, string>();
  let pending: string[] = [];
  let message: string | undefined;
  for (const line of source.split("\n")) {
    const comment = /^\s*\/\/ ?(.*)$/.exec(line);
    if (comment) {
      pending.push((comment[1] ?? "").trimEnd());
      continue;
    }
    const declaration =
      /^(service|message) (\w+) \{/.exec(line) ??
      /^\s+(rpc) (\w+)\(/.exec(line) ??
      /^\s+(?:optional |repeated )?[\w.]+ (\w+) = \d+/.exec(line);
    if (declaration) {
      let key: string;
      if (declaration.length === 3) {
        key = `${declaration[1]}:${declaration[2]}`;
        if (declaration[1] === "message") message = declaration[2];
      } else {
        key = `${message}.${declaration[1]}`;
      }
      if (pending.length > 0) comments.set(key, pending.join("\n").trim());
    }
    if (/^\}/.test(line)) message = undefined;
    pending = [];
  }
  return comments;
}

// Either case, with or without each hyphen, as the validator reads a UUID.
const uuidPattern = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$";

/** Texts at the edges of the text formats. */
const texts = [
  "",
  " ",
  "\t\n",
  "orders",
  "orders.eu-west_1",
  "bad id",
  "ordèrs",
  "a".repeat(128),
  "a".repeat(129),
  "01234567-89ab-cdef-0123-456789abcdef",
  "01234567-89AB-CDEF-0123-456789ABCDEF",
  "0123456789abcdef0123456789abcdef",
  "01234567-89abcdef-0123456789abcdef",
  "{01234567-89ab-cdef-0123-456789abcdef}",
  "01234567-89ab-cdef-0123-456789abcde",
  "g1234567-89ab-cdef-0123-456789abcdef",
];

/** Request fields of each text format (but FORMAT_SCOPES, which the document only states as not blank), with valid values for the fields checked around them. */
const textFields: { message: DescMessage; field: string; others?: Record<string, string> }[] = [
  { message: CreateTopicRequestSchema, field: "id" },
  { message: CreateSubscriptionRequestSchema, field: "topic_id", others: { id: "orders" } },
  { message: CreateClientRequestSchema, field: "name", others: { scopes: "*" } },
];

type TextRules = { pattern: string; minLength?: number; maxLength?: number };

/** Whether a JSON Schema validator lets the text through the field's schema (patterns in Unicode mode, lengths in code points). */
function documentAllows(schema: TextRules, text: string): boolean {
  const length = [...text].length;
  return new RegExp(schema.pattern, "u").test(text) && length >= (schema.minLength ?? 0) && length <= (schema.maxLength ?? Infinity);
}

/** Whether the server's validator lets the text through the field `name`, the `others` (by local name) being valid. */
function validatorAccepts(message: DescMessage, name: string, text: string, others: Record<string, string> = {}): boolean {
  const field = message.fields.find((candidate) => candidate.name === name);
  try {
    validateMessage(message, create(message, { ...others, [field?.localName ?? name]: text }));
    return true;
  } catch (error) {
    expect(ConnectError.from(error).rawMessage).toMatch(new RegExp(`^${name} `));
    return false;
  }
}

let document: Document;
let text: string;
let comments: Map<string, string>;

beforeAll(async () => {
  text = await readFile(join(root, "gen", "openapi.json"), "utf8");
  document = JSON.parse(text) as Document;
  const protoDir = join(root, "proto", "fastpubsub", "v1");
  comments = new Map();
  for (const name of await readdir(protoDir)) {
    for (const entry of protoComments(await readFile(join(protoDir, name), "utf8"))) comments.set(...entry);
  }
});

function operationOf(call: Call): Operation {
  const operation = document.paths[call.path]?.[call.method];
  if (!operation) throw new Error(`${call.method.toUpperCase()} ${call.path} is missing from gen/openapi.json`);
  return operation;
}

function resolve(schema: Schema): Schema {
  const name = schema.$ref?.replace("#/components/schemas/", "");
  return name ? (document.components.schemas[name] ?? {}) : schema;
}

describe("gen/openapi.json", () => {
  it("is an OpenAPI 3.1 document titled fastpubsub", () => {
    expect(document.openapi).toBe("3.1.0");
    expect(document.info.title).toBe("fastpubsub");
    expect(document.info.description).not.toBe("");
  });

  it("has exactly the REST paths of the API and the health paths", () => {
    const found = Object.entries(document.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`));
    const expected = [...calls.map((call) => `${call.method} ${call.path}`), ...healthPaths.map((path) => `get ${path}`)];
    expect(found.sort()).toEqual(expected.sort());
  });

  it.each(calls)("$method $path answers $status with the right parameters and body", (call) => {
    const operation = operationOf(call);
    expect(operation.operationId).toBe(call.operationId);
    const success = operation.responses[call.status];
    expect(success, `response ${call.status}`).toBeDefined();
    expect(Object.keys(operation.responses).filter((status) => status.startsWith("2"))).toEqual([call.status]);
    if (call.status === "204") {
      expect(success?.content).toBeUndefined();
    } else {
      expect(resolve(success?.content?.["application/json"]?.schema ?? {}).type).toBe("object");
    }
    const parameters = operation.parameters ?? [];
    expect(parameters.filter((parameter) => parameter.in === "path").map((parameter) => parameter.name)).toEqual(call.pathParams ?? []);
    for (const parameter of parameters.filter((candidate) => candidate.in === "path")) expect(parameter.required).toBe(true);
    const query = Object.fromEntries(
      parameters.filter((parameter) => parameter.in === "query").map((parameter) => [parameter.name, parameter.schema.type]),
    );
    expect(query).toEqual(call.query ?? {});
    const body = operation.requestBody?.content["application/json"]?.schema;
    expect(body && resolve(body).type).toBe(call.body);
    for (const status of ["422", "500"]) {
      expect(operation.responses[status]?.$ref).toMatch(/^#\/components\/responses\//);
    }
  });

  it("describes every error as {detail: string}", () => {
    expect(document.components.schemas.Error).toMatchObject({
      type: "object",
      properties: { detail: { type: "string" } },
      required: ["detail"],
    });
    for (const [name, response] of Object.entries(document.components.responses)) {
      expect(response.content["application/json"]?.schema, name).toEqual({ $ref: "#/components/schemas/Error" });
    }
    expect(Object.keys(document.paths["/readiness"]?.get?.responses ?? {})).toEqual(["200", "503"]);
  });

  it("names every property by its snake_case proto field name", () => {
    const names = Object.values(document.components.schemas).flatMap((schema) => Object.keys(schema.properties ?? {}));
    expect(names.length).toBeGreaterThan(20);
    for (const name of names) expect(name).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
    expect(Object.keys(document.components.schemas.Subscription?.properties ?? {})).toEqual([
      "id",
      "topic_id",
      "filter",
      "max_delivery_attempts",
      "backoff_min_seconds",
      "backoff_max_seconds",
      "created_at",
      "ack_deadline_seconds",
      "ordering_key",
    ]);
  });

  it("takes its descriptions from the proto comments", () => {
    for (const call of calls) {
      const comment = comments.get(`rpc:${call.operationId}`);
      expect(comment, call.operationId).toBeDefined();
      expect(operationOf(call).description.startsWith(comment ?? "-"), call.operationId).toBe(true);
      expect(operationOf(call).summary).toBe((comment ?? "").replace(/\s+/g, " ").split(/(?<=\.) /)[0]);
    }
    for (const tag of document.tags.filter((candidate) => candidate.name.endsWith("Service"))) {
      expect(tag.description).toBe(comments.get(`service:${tag.name}`));
    }
    let checked = 0;
    for (const [name, schema] of Object.entries(document.components.schemas)) {
      if (name === "Error") continue;
      expect(comments.get(`message:${name}`), name).toBeDefined();
      expect(schema.description, name).toBe(comments.get(`message:${name}`));
      for (const [field, property] of Object.entries(schema.properties ?? {})) {
        const comment = comments.get(`${name}.${field}`);
        expect(comment, `${name}.${field}`).toBeDefined();
        expect(property.description, `${name}.${field}`).toBe(comment);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it("carries the input rules of (fastpubsub.v1.rules)", () => {
    const schemas = document.components.schemas;
    expect(schemas.CreateTopicRequest?.properties?.id).toMatchObject({ pattern: "^[a-zA-Z0-9-._]+$", minLength: 1, maxLength: 128 });
    expect(schemas.CreateTopicRequest?.required).toEqual(["id"]);
    expect(schemas.CreateSubscriptionRequest?.properties?.max_delivery_attempts).toMatchObject({ type: "integer", minimum: 1 });
    // HTTP Basic may carry the credentials instead: the server checks them once it has them.
    expect(schemas.CreateTokenRequest?.required).toBeUndefined();
    const getClient = document.paths["/clients/{id}"]?.get?.parameters?.[0];
    expect(getClient?.schema).toMatchObject({ type: "string", pattern: uuidPattern });
    const limit = document.paths["/topics"]?.get?.parameters?.find((parameter) => parameter.name === "limit");
    expect(limit?.schema).toMatchObject({ type: "integer", minimum: 1, maximum: 100 });
    expect(limit?.required).toBeUndefined();
    const consumer = document.paths["/subscriptions/{subscription_id}/messages"]?.get?.parameters?.find(
      (parameter) => parameter.name === "consumer_id",
    );
    expect(consumer?.required).toBe(true);
    // An optional field is required only by a `required` rule, whatever its format.
    const acksConsumer = document.paths["/subscriptions/{subscription_id}/acks"]?.post?.parameters?.find(
      (parameter) => parameter.name === "consumer_id",
    );
    expect(acksConsumer).toMatchObject({ schema: { type: "string", pattern: "\\S", minLength: 1 } });
    expect(acksConsumer?.required).toBeUndefined();
    const modify = document.paths["/subscriptions/{subscription_id}/modify-ack-deadline"]?.post;
    expect(modify?.requestBody?.content["application/json"]?.schema).toMatchObject({
      required: ["ack_deadline_seconds"],
      properties: { ack_deadline_seconds: { type: "integer", minimum: 0, maximum: 600 } },
    });
    // A whole-message body's optional fields may come by the query string; required ones only in the body.
    expect(modify?.parameters?.map((parameter) => [parameter.name, parameter.in, parameter.required])).toEqual([
      ["subscription_id", "path", true],
      ["consumer_id", "query", undefined],
    ]);
    expect(modify?.parameters?.[1]?.description).toContain("may be given in the body instead");
    const acks = document.paths["/subscriptions/{subscription_id}/acks"]?.post?.requestBody;
    expect(acks?.required).toBe(true);
    // Reprocess and purge of every dead letter (`?all=true`) may leave their body out.
    for (const action of ["reprocess", "purge"]) {
      const dlq = document.paths[`/subscriptions/{subscription_id}/dlq/${action}`]?.post?.requestBody;
      expect(dlq?.required).toBeUndefined();
      expect(dlq?.content["application/json"]?.schema).toEqual(acks?.content["application/json"]?.schema);
    }
    expect(acks?.content["application/json"]?.schema).toEqual({
      type: "array",
      items: { type: "string", pattern: uuidPattern },
      maxItems: 1000,
    });
    const token = document.paths["/oauth/token"]?.post?.requestBody?.content;
    expect(token?.["application/x-www-form-urlencoded"]?.schema).toEqual({ $ref: "#/components/schemas/CreateTokenRequest" });
    expect(token?.["application/json"]?.schema).toEqual({ $ref: "#/components/schemas/CreateTokenRequest" });
    expect(document.paths["/subscriptions"]?.post?.requestBody?.content["application/x-www-form-urlencoded"]).toBeUndefined();
    const publish = document.paths["/topics/{topic_id}/messages"]?.post?.requestBody?.content["application/json"]?.schema;
    expect(publish).toMatchObject({ type: "array", items: { type: "object" }, maxItems: 1000 });
  });

  it.each(textFields.map((test) => ({ ...test, type: test.message.name })))(
    "states exactly the texts the validator accepts in $field of $type",
    ({ message, field, others }) => {
      const schema = document.components.schemas[message.name]?.properties?.[field] as Schema & TextRules;
      expect(schema?.pattern).toBeDefined();
      for (const text of texts) {
        expect(documentAllows(schema, text), JSON.stringify(text)).toBe(validatorAccepts(message, field, text, others));
      }
    },
  );

  it("asks for a bearer token with the RPC's scope except on public RPCs", () => {
    expect(document.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer", bearerFormat: "JWT" });
    const publish = operationOf(calls.find((call) => call.operationId === "PublishMessages") as Call);
    expect(publish.security).toEqual([{ bearerAuth: ["topics:publish"] }]);
    expect(publish.description).toContain("`topics:publish`");
    expect(publish.responses["401"]).toBeDefined();
    expect(publish.responses["403"]).toBeDefined();
    for (const call of calls.filter((candidate) => candidate.operationId !== "CreateToken")) {
      expect(operationOf(call).security?.[0]?.bearerAuth?.[0], call.operationId).toMatch(/^[a-z]+:[a-z]+$/);
    }
    const token = operationOf(calls.find((call) => call.operationId === "CreateToken") as Call);
    expect(token.security).toBeUndefined();
    expect(token.description).toContain("public");
  });

  it("groups operations by service", () => {
    expect(document.tags.map((tag) => tag.name)).toEqual(["AuthService", "ClientService", "SubscriptionService", "TopicService", "Health"]);
    for (const call of calls) {
      const service = call.path.startsWith("/topics")
        ? "TopicService"
        : call.path.startsWith("/subscriptions")
          ? "SubscriptionService"
          : call.path.startsWith("/clients")
            ? "ClientService"
            : "AuthService";
      expect(operationOf(call).tags).toEqual([service]);
    }
  });
});

describe("generation", () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), "fastpubsub-openapi-"));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it("is deterministic: two runs of buf generate reproduce gen/ byte for byte", { timeout: 60_000 }, async () => {
    for (const attempt of ["first", "second"]) {
      const dir = join(out, attempt);
      await run("buf", ["generate", "-o", dir], { cwd: root, env });
      const generated = (await readdir(join(dir, "gen"), { recursive: true })).sort();
      expect(generated).toEqual((await readdir(join(root, "gen"), { recursive: true })).sort());
      for (const name of generated.filter((candidate) => /\.(ts|json)$/.test(candidate))) {
        expect(await readFile(join(dir, "gen", name), "utf8"), name).toBe(await readFile(join(root, "gen", name), "utf8"));
      }
    }
    expect(text).toBe(`${JSON.stringify(document, null, 2)}\n`);
  });

  it("runs without gen/, which buf generate removes first", { timeout: 60_000 }, async () => {
    const dir = join(out, "fresh");
    for (const name of ["src", "proto", "buf.yaml", "buf.gen.yaml", "package.json"]) {
      await cp(join(root, name), join(dir, name), { recursive: true });
    }
    await symlink(join(root, "node_modules"), join(dir, "node_modules"));
    await run("buf", ["generate"], { cwd: dir, env });
    expect(await readFile(join(dir, "gen", "openapi.json"), "utf8")).toBe(text);
  });

  it("builds the same document from a buf image of the proto", { timeout: 60_000 }, async () => {
    const image = join(out, "image.binpb");
    await run("buf", ["build", "-o", image], { cwd: root, env });
    const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, await readFile(image)));
    const files = [...registry.files].filter((file) => file.name.startsWith("fastpubsub/") && file.services.length > 0).reverse();
    expect(openApiDocument(registry, files)).toEqual(document);
  });
});
