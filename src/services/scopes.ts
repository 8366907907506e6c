/** The scopes a client can be granted, as in the seed; `*` grants everything. */
export const knownScopes = new Set([
  "*",
  "topics:create",
  "topics:read",
  "topics:delete",
  "topics:publish",
  "subscriptions:create",
  "subscriptions:read",
  "subscriptions:delete",
  "subscriptions:consume",
  "clients:create",
  "clients:update",
  "clients:read",
  "clients:delete",
]);

/** Tells whether a scope is a known one, optionally narrowed to one resource (`topics:publish:orders`). */
export function isValidScope(scope: string): boolean {
  const [resource, action, id, ...rest] = scope.split(":");
  if (rest.length > 0 || id === "") return false;
  return knownScopes.has(action === undefined ? (resource ?? "") : `${resource}:${action}`);
}
