import { randomUUID } from "node:crypto";

/** A fresh resource id, unique across test runs, e.g. `orders-3f2a9c1b`. */
export function uniqueId(prefix: string) {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}
