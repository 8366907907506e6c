import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { connectErrorFromDatabaseError } from "../../db/errors.ts";
import type { Logger } from "../../logger.ts";

/**
 * Creates the interceptor that gives every failure a Connect code: database
 * errors become the code they stand for, anything unexpected becomes Internal
 * with its cause logged once and never sent.
 */
export function createErrorInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    try {
      return await next(request);
    } catch (error) {
      if (error instanceof ConnectError) throw error;
      // A database that does not answer is logged once by the database's health, not by every call.
      const translated = connectErrorFromDatabaseError(error);
      if (translated) throw translated;
      logger.error("unexpected error", { procedure: procedureOf(request), error: errorText(error) });
      throw new ConnectError("Internal server error", Code.Internal, undefined, undefined, error);
    }
  };
}

function errorText(error: unknown) {
  return error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
}

function procedureOf(request: { service: { typeName: string }; method: { name: string } }) {
  return `${request.service.typeName}/${request.method.name}`;
}
