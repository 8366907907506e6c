import type { DescMethod, DescService, Message } from "@bufbuild/protobuf";
import type { ConnectRouterOptions, ContextValues, Interceptor, ServiceImpl } from "@connectrpc/connect";
import { ConnectError, createConnectRouter } from "@connectrpc/connect";
import { type TwinMethod, twinOf } from "../wire/struct-twins.ts";
import { kUnreadablePayload } from "./context.ts";

// The content types of the binary protocols: gRPC, gRPC-Web, and Connect unary and streaming.
const binaryTypes = new Set([
  "application/grpc",
  "application/grpc+proto",
  "application/grpc-web",
  "application/grpc-web+proto",
  "application/proto",
  "application/connect+proto",
]);

/** Whether a request's content type is one of a binary protocol's. */
export function isBinaryRequest(contentType: string | undefined) {
  if (!contentType) return false;
  const end = contentType.indexOf(";");
  return binaryTypes.has((end < 0 ? contentType : contentType.slice(0, end)).trim().toLowerCase());
}

/**
 * Creates the router of the binary protocols for the methods whose messages
 * hold a google.protobuf.Struct: it serves their twins (src/wire/struct-twins.ts),
 * whose Struct fields are bytes, through the same implementations and
 * interceptors. Its outermost interceptor turns a twin call into the original
 * one before any other runs, so they see what they see on the other router,
 * and turns the answer back (each message of a stream). Its `service` takes
 * the original router's registrations; `paths` are then the request paths to
 * send here.
 */
export function createStructTwinRouter(options: ConnectRouterOptions & { interceptors: Interceptor[] }) {
  const byTwin = new Map<DescMethod, TwinMethod & { service: DescService }>();
  const translate: Interceptor = (next) => async (request) => {
    const method = byTwin.get(request.method);
    if (!method) return next(request);
    // The same call, as the original method's: only the method, the service and the message change.
    type Request = Parameters<typeof next>[0];
    const message = request.stream
      ? mapIterable(request.message, (item) => method.requestFromTwin(item))
      : readRequest(method, request.message, request.contextValues);
    const response = await next({ ...request, method: method.original, service: method.service, message } as Request);
    if (response.stream) return { ...response, message: mapIterable(response.message, (message) => method.responseToTwin(message)) };
    return { ...response, message: method.responseToTwin(response.message) };
  };
  const router = createConnectRouter({ ...options, interceptors: [translate, ...options.interceptors] });
  const paths = new Set<string>();
  return {
    router,
    /** The request paths this router serves. */
    paths,
    /** Registers the twin of a service whose messages hold a Struct; ignores any other. */
    service(service: DescService, implementation: Partial<ServiceImpl<DescService>>, serviceOptions?: Partial<ConnectRouterOptions>) {
      const twin = twinOf(service);
      if (!twin.holdsStruct) return;
      for (const method of twin.methods.values()) {
        byTwin.set(method.twin, { ...method, service });
        if (method.holdsStruct) paths.add(`/${service.typeName}/${method.original.name}`);
      }
      const interceptors = serviceOptions?.interceptors;
      router.service(
        twin.twin,
        implementation as Partial<ServiceImpl<DescService>>,
        interceptors ? { ...serviceOptions, interceptors: [translate, ...interceptors] } : serviceOptions,
      );
    },
  };
}

/** The original request of a twin's; when a payload cannot be read, the twin's as it is, and why, for the validation interceptor. */
function readRequest(method: TwinMethod, message: Message, contextValues: ContextValues) {
  try {
    return method.requestFromTwin(message);
  } catch (error) {
    contextValues.set(kUnreadablePayload, ConnectError.from(error));
    return message;
  }
}

async function* mapIterable(messages: AsyncIterable<Message>, map: (message: Message) => Message) {
  for await (const message of messages) yield map(message);
}
