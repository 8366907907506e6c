import { create, type DescMethod, type DescService, fromJson, type JsonObject, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";

/** One REST call of the seed's API, written out by hand from API.md rather than read from the proto. */
interface RestCall {
  verb: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** The path, with `{field}` standing for a request field. */
  path: string;
  /** Request fields sent in the query string. */
  query?: string[];
  /** The request field sent as the body, or `*` for every field in neither the path nor the query. */
  body?: string;
  /** The status of success. */
  status: 200 | 201 | 204;
}

const page = ["offset", "limit"];

const calls: Record<string, RestCall> = {
  CreateTopic: { verb: "POST", path: "/topics", body: "*", status: 201 },
  GetTopic: { verb: "GET", path: "/topics/{id}", status: 200 },
  ListTopics: { verb: "GET", path: "/topics", query: page, status: 200 },
  DeleteTopic: { verb: "DELETE", path: "/topics/{id}", status: 204 },
  PublishMessages: {
    verb: "POST",
    path: "/topics/{topic_id}/messages",
    query: ["delay_seconds", "deliver_at"],
    body: "messages",
    status: 204,
  },
  CreateSubscription: { verb: "POST", path: "/subscriptions", body: "*", status: 201 },
  GetSubscription: { verb: "GET", path: "/subscriptions/{id}", status: 200 },
  ListSubscriptions: { verb: "GET", path: "/subscriptions", query: page, status: 200 },
  UpdateSubscription: { verb: "PATCH", path: "/subscriptions/{id}", body: "*", status: 200 },
  DeleteSubscription: { verb: "DELETE", path: "/subscriptions/{id}", status: 204 },
  ConsumeMessages: {
    verb: "GET",
    path: "/subscriptions/{subscription_id}/messages",
    query: ["consumer_id", "batch_size", "wait_seconds"],
    status: 200,
  },
  AckMessages: { verb: "POST", path: "/subscriptions/{subscription_id}/acks", query: ["consumer_id"], body: "message_ids", status: 204 },
  NackMessages: {
    verb: "POST",
    path: "/subscriptions/{subscription_id}/nacks",
    query: ["consumer_id", "delay_seconds", "dead_letter", "reason"],
    body: "message_ids",
    status: 204,
  },
  ModifyAckDeadline: {
    verb: "POST",
    path: "/subscriptions/{subscription_id}/modify-ack-deadline",
    query: ["consumer_id"],
    body: "*",
    status: 204,
  },
  ListDlqMessages: { verb: "GET", path: "/subscriptions/{subscription_id}/dlq", query: page, status: 200 },
  ReprocessDlqMessages: {
    verb: "POST",
    path: "/subscriptions/{subscription_id}/dlq/reprocess",
    query: ["all"],
    body: "message_ids",
    status: 204,
  },
  PurgeDlqMessages: { verb: "POST", path: "/subscriptions/{subscription_id}/dlq/purge", query: ["all"], body: "message_ids", status: 204 },
  GetSubscriptionMetrics: { verb: "GET", path: "/subscriptions/{subscription_id}/metrics", status: 200 },
  CreateClient: { verb: "POST", path: "/clients", body: "*", status: 201 },
  GetClient: { verb: "GET", path: "/clients/{id}", status: 200 },
  ListClients: { verb: "GET", path: "/clients", query: page, status: 200 },
  UpdateClient: { verb: "PUT", path: "/clients/{id}", body: "*", status: 200 },
  DeleteClient: { verb: "DELETE", path: "/clients/{id}", status: 204 },
  CreateToken: { verb: "POST", path: "/oauth/token", body: "*", status: 201 },
};

const codeFromStatus: Record<number, Code> = {
  401: Code.Unauthenticated,
  403: Code.PermissionDenied,
  404: Code.NotFound,
  409: Code.AlreadyExists,
  413: Code.ResourceExhausted,
  422: Code.InvalidArgument,
  500: Code.Internal,
  501: Code.Unimplemented,
  503: Code.Unavailable,
};

/**
 * A client of one service over the seed's REST paths, with the same methods
 * as a Connect client. It checks each answer's status and body shape, and
 * throws failures as ConnectError so that one test can run on every protocol.
 */
export function createRestClient<S extends DescService>(service: S, baseUrl: string, headers: Record<string, string>): Client<S> {
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    client[method.localName] = (init: object) => callRest(method, baseUrl, headers, init);
  }
  return client as Client<S>;
}

async function callRest(method: DescMethod, baseUrl: string, headers: Record<string, string>, init: object) {
  const call = calls[method.name];
  if (!call) throw new Error(`no REST call for ${method.name}`);
  const request = toJson(method.input, create(method.input, init as Record<string, unknown>), { useProtoFieldName: true }) as JsonObject;
  const pathFields = [...call.path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]);
  const path = call.path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(String(request[name] ?? "")));
  const url = new URL(path, baseUrl);
  for (const name of call.query ?? []) {
    if (request[name] !== undefined) url.searchParams.set(name, String(request[name]));
  }
  let body: JsonValue | undefined;
  if (call.body === "*") {
    body = Object.fromEntries(Object.entries(request).filter(([name]) => !pathFields.includes(name) && !call.query?.includes(name)));
  } else if (call.body) {
    body = request[call.body] ?? [];
  }
  const response = await fetch(url, {
    method: call.verb,
    headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status === call.status) {
    if (call.status === 204) {
      if (text !== "") throw new Error(`${method.name}: 204 with a body: ${text}`);
      return create(method.output);
    }
    return fromJson(method.output, JSON.parse(text) as JsonValue);
  }
  const json = JSON.parse(text) as JsonValue;
  const detail = (json as { detail?: unknown }).detail;
  if (typeof detail !== "string" || Object.keys(json as object).length !== 1) {
    throw new Error(`${method.name}: ${response.status} without a {"detail": "…"} body: ${text}`);
  }
  const code = codeFromStatus[response.status];
  if (code === undefined) throw new Error(`${method.name}: unexpected status ${response.status}: ${text}`);
  // The answer's headers are the error's metadata, as a Connect client reads them.
  throw new ConnectError(detail, code, response.headers);
}
