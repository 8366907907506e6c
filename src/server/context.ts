import { type ConnectError, createContextKey } from "@connectrpc/connect";

/** The REST route template a call came through, e.g. `/topics/{id}`; undefined for RPC protocols. */
export const kRestRoute = createContextKey<string | undefined>(undefined, { description: "REST route" });

/** The client a call was authenticated as; undefined when authentication is off or the RPC is public. */
export const kClient = createContextKey<{ id: string; scopes: ReadonlySet<string> } | undefined>(undefined, { description: "client" });

/**
 * Why a binary request's payload could not be read (src/server/struct-twin-router.ts): the
 * validation interceptor refuses the call with it, after the interceptors before it (metrics,
 * errors, auth) have run, as for any other invalid request.
 */
export const kUnreadablePayload = createContextKey<ConnectError | undefined>(undefined, { description: "unreadable payload" });
