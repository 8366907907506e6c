import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/fastpubsub/v1/auth_service_pb.ts";
import { ClientService } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { SubscriptionService } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { createRestClient } from "./rest-client.ts";

/** Every way a client can call the API. */
export const protocols = ["rest", "connect-json", "connect-binary", "grpc", "grpc-web"] as const;
export type Protocol = (typeof protocols)[number];

/** Clients of the four services over one protocol. */
export interface Api {
  topics: Client<typeof TopicService>;
  subscriptions: Client<typeof SubscriptionService>;
  clients: Client<typeof ClientService>;
  auth: Client<typeof AuthService>;
}

/** Creates a transport of an RPC protocol; `headers` go with every call. */
export function createTransport(protocol: Exclude<Protocol, "rest">, baseUrl: string): Transport {
  switch (protocol) {
    case "connect-json":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", jsonOptions: { useProtoFieldName: true } });
    case "connect-binary":
      return createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true });
    case "grpc":
      return createGrpcTransport({ baseUrl });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1" });
  }
}

/** Creates clients of every service over `protocol`, errors as ConnectError whatever the protocol. */
export function createApi(protocol: Protocol, baseUrl: string, headers: Record<string, string> = {}): Api {
  const client = <S extends DescService>(service: S): Client<S> => {
    if (protocol === "rest") return createRestClient(service, baseUrl, headers);
    const transport = createTransport(protocol, baseUrl);
    const rpc = createClient(service, transport);
    return withHeaders(rpc, headers);
  };
  return {
    topics: client(TopicService),
    subscriptions: client(SubscriptionService),
    clients: client(ClientService),
    auth: client(AuthService),
  };
}

function withHeaders<C extends object>(client: C, headers: Record<string, string>): C {
  if (Object.keys(headers).length === 0) return client;
  return new Proxy(client, {
    get(target, name) {
      const method = Reflect.get(target, name) as (request: unknown, options?: { headers?: Record<string, string> }) => unknown;
      return (request: unknown, options: { headers?: Record<string, string> } = {}) =>
        method(request, { ...options, headers: { ...headers, ...options.headers } });
    },
  });
}
