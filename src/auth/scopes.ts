/** The scopes a client can be granted: the seed's, and `subscriptions:update`; `*` grants everything. */
export const knownScopes = new Set([
  "*",
  "topics:create",
  "topics:read",
  "topics:delete",
  "topics:publish",
  "subscriptions:create",
  "subscriptions:read",
  "subscriptions:update",
  "subscriptions:delete",
  "subscriptions:consume",
  "clients:create",
  "clients:update",
  "clients:read",
  "clients:delete",
]);

/** Tells whether a scope is a known one, optionally narrowed to one resource id (`topics:publish:orders`), as the seed does. */
export function isValidScope(scope: string): boolean {
  const parts = scope.split(":");
  if (parts.length === 3 && parts[2] === "") return false;
  return knownScopes.has(parts.length === 3 ? `${parts[0]}:${parts[1]}` : scope);
}

/** Tells whether `scopes` grant `required` (`resource:action`), on the resource `resourceId` when given. */
export function hasScope(scopes: ReadonlySet<string>, required: string, resourceId?: string): boolean {
  return (
    scopes.has("*") || scopes.has(required) || (resourceId !== undefined && resourceId !== "" && scopes.has(`${required}:${resourceId}`))
  );
}
