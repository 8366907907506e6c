import type { Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";

// A server-streaming call's request message, read up front.
const kSingleRequest = createContextKey<Message | undefined>(undefined, { description: "server-streaming request" });

/** The request message of a call that has one (unary or server-streaming), as the interceptors after this one see it. */
export function requestMessage(request: Parameters<Parameters<Interceptor>[0]>[0]): Message | undefined {
  return request.stream ? request.contextValues.get(kSingleRequest) : request.message;
}

/**
 * Creates the interceptor that reads the one request message of a
 * server-streaming call before the interceptors after it run, so that auth
 * (its resource id) and validation read it as they read a unary call's.
 */
export function createSingleRequestInterceptor(): Interceptor {
  return (next) => async (request) => {
    if (!request.stream || request.method.methodKind !== "server_streaming") return next(request);
    let message: Message | undefined;
    for await (const received of request.message) {
      if (message !== undefined) throw new ConnectError("a server-streaming call takes one request message", Code.InvalidArgument);
      message = received;
    }
    if (message === undefined) throw new ConnectError("a server-streaming call needs a request message", Code.InvalidArgument);
    request.contextValues.set(kSingleRequest, message);
    return next({ ...request, message: createAsyncIterable([message]) });
  };
}
