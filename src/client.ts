/**
 * The TypeScript client of fastpubsub: `import { createFastPubSubClient } from "fastpubsub/client"`.
 * It also exports the generated services, messages and schemas (also at `fastpubsub/gen/fastpubsub/v1/<file>_pb`).
 */
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { AuthService } from "../gen/fastpubsub/v1/auth_service_pb.ts";
import { ClientService } from "../gen/fastpubsub/v1/client_service_pb.ts";
import { SubscriptionService } from "../gen/fastpubsub/v1/subscription_service_pb.ts";
import { TopicService } from "../gen/fastpubsub/v1/topic_service_pb.ts";

/** The protocols a client can speak; the server answers all of them on one port. */
export type Protocol = "connect" | "grpc" | "grpc-web";

/** Options of createFastPubSubClient. */
export interface FastPubSubClientOptions {
  /** The wire protocol; Connect (over HTTP/1.1, binary protobuf) by default. */
  protocol?: Protocol;
  /** An access token for servers with authentication on, or a function that returns a current one. */
  token?: string | (() => string | Promise<string>);
}

/** Clients of the four services of one server. */
export interface FastPubSubClient {
  topics: Client<typeof TopicService>;
  subscriptions: Client<typeof SubscriptionService>;
  clients: Client<typeof ClientService>;
  auth: Client<typeof AuthService>;
}

/** Creates clients of every fastpubsub service at `baseUrl` (e.g. `http://localhost:8000`). */
export function createFastPubSubClient(baseUrl: string, options: FastPubSubClientOptions = {}): FastPubSubClient {
  const { token } = options;
  const interceptors: Interceptor[] = [];
  if (token !== undefined) {
    interceptors.push((next) => async (request) => {
      request.header.set("authorization", `Bearer ${typeof token === "string" ? token : await token()}`);
      return next(request);
    });
  }
  const transport = createTransport(baseUrl, options.protocol ?? "connect", interceptors);
  return {
    topics: createClient(TopicService, transport),
    subscriptions: createClient(SubscriptionService, transport),
    clients: createClient(ClientService, transport),
    auth: createClient(AuthService, transport),
  };
}

function createTransport(baseUrl: string, protocol: Protocol, interceptors: Interceptor[]): Transport {
  switch (protocol) {
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors });
    case "connect":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors });
  }
}

/**
 * Returns a token function for createFastPubSubClient that requests tokens
 * with the client-credentials flow, one request at a time however many calls
 * wait for it, and renews each a minute (or, for short-lived tokens, half its
 * lifetime) before it expires.
 */
export function clientCredentials(baseUrl: string, clientId: string, clientSecret: string): () => Promise<string> {
  const auth = createClient(AuthService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  let current: { token: Promise<string>; renewAt: number } | undefined;
  const renew = () => {
    const entry = { token: Promise.resolve(""), renewAt: Number.POSITIVE_INFINITY };
    entry.token = auth.createToken({ clientId, clientSecret }).then(
      (answer) => {
        entry.renewAt = Date.now() + (answer.expiresIn - Math.min(60, answer.expiresIn / 2)) * 1000;
        return answer.accessToken;
      },
      (error: unknown) => {
        // A failed request is made again by the next call.
        if (current === entry) current = undefined;
        throw error;
      },
    );
    return entry;
  };
  return async () => {
    if (!current || Date.now() >= current.renewAt) current = renew();
    return current.token;
  };
}

export * from "../gen/fastpubsub/v1/auth_service_pb.ts";
export * from "../gen/fastpubsub/v1/client_service_pb.ts";
export * from "../gen/fastpubsub/v1/subscription_service_pb.ts";
export * from "../gen/fastpubsub/v1/topic_service_pb.ts";
