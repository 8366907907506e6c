import { createContextKey } from "@connectrpc/connect";

/** The REST route template a call came through, e.g. `/topics/{id}`; undefined for RPC protocols. */
export const kRestRoute = createContextKey<string | undefined>(undefined, { description: "REST route" });
