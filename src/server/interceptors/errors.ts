import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { connectErrorFromDatabaseError } from "../../db/errors.ts";
import type { Logger } from "../../logger.ts";

/**
 * Creates the interceptor that gives every failure a Connect code: database
 * errors become the code they stand for, anything unexpected becomes Internal
 * with its cause logged once and never sent.
 */
export function createErrorInterceptor(logger: Logger): Interceptor {
  const translate = (request: Parameters<Parameters<Interceptor>[0]>[0], error: unknown) => {
    if (error instanceof ConnectError) return error;
    // A database that does not answer is logged once by the database's health, not by every call.
    const translated = connectErrorFromDatabaseError(error);
    if (translated) return translated;
    logger.error("unexpected error", { procedure: procedureOf(request), error: errorText(error) });
    return new ConnectError("Internal server error", Code.Internal, undefined, undefined, error);
  };
  return (next) => async (request) => {
    try {
      const response = await next(request);
      if (!response.stream) return response;
      // A stream fails while it is read, after the call has returned.
      const messages = response.message;
      return {
        ...response,
        message: (async function* () {
          try {
            yield* messages;
          } catch (error) {
            throw translate(request, error);
          }
        })(),
      };
    } catch (error) {
      throw translate(request, error);
    }
  };
}

function errorText(error: unknown) {
  return error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
}

function procedureOf(request: { service: { typeName: string }; method: { name: string } }) {
  return `${request.service.typeName}/${request.method.name}`;
}
