import { createContextKey } from "@connectrpc/connect";

/** The REST route template a call came through, e.g. `/topics/{id}`; undefined for RPC protocols. */
export const kRestRoute = createContextKey<string | undefined>(undefined, { description: "REST route" });

/** The client a call was authenticated as; undefined when authentication is off or the RPC is public. */
export const kClient = createContextKey<{ id: string; scopes: ReadonlySet<string> } | undefined>(undefined, { description: "client" });
