import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { access } from "../../../gen/fastpubsub/v1/access_pb.ts";
import type { ClientStates } from "../../auth/client-states.ts";
import { hasScope } from "../../auth/scopes.ts";
import { InvalidTokenError, type Tokens } from "../../auth/tokens.ts";
import { unauthenticated } from "../../auth/unauthenticated.ts";
import { kClient } from "../context.ts";
import { type MethodAccess, methodAccess } from "./method-access.ts";
import { requestMessage } from "./single-request.ts";

/** Reads the access rule of every RPC of the services; throws when one has none, so that nothing is open by mistake. */
export function accessRules(services: readonly DescService[]): Map<DescMethod, MethodAccess> {
  const methods = services.flatMap((service) => service.methods);
  return new Map(methods.map((method) => [method, methodAccess(method, access)]));
}

/**
 * Creates the interceptor that, when authentication is enabled, lets a call
 * through only with a valid bearer token of an active, unrevoked client whose
 * scopes grant the RPC: 401/unauthenticated otherwise, 403/permission_denied
 * for a valid token without the scope. It runs for every protocol, REST included.
 */
export function createAuthInterceptor(options: {
  rules: Map<DescMethod, MethodAccess>;
  tokens: Tokens;
  states: ClientStates;
}): Interceptor {
  return (next) => async (request) => {
    const rule = options.rules.get(request.method);
    if (!rule) throw new ConnectError("RPC without an access rule", Code.Internal);
    if (rule.public) return next(request);
    const token = /^Bearer\s+(\S+)\s*$/i.exec(request.header.get("authorization") ?? "")?.[1];
    if (!token) throw unauthenticated("Invalid jwt token");
    let claims: Awaited<ReturnType<Tokens["verify"]>>;
    try {
      claims = await options.tokens.verify(token);
    } catch (error) {
      if (error instanceof InvalidTokenError) throw unauthenticated("Invalid jwt token", { token: true });
      throw error;
    }
    const state = await options.states.get(claims.sub);
    if (!state) throw unauthenticated("Client not found", { token: true });
    if (!state.isActive) throw unauthenticated("Client disabled", { token: true });
    if (state.tokenVersion !== claims.ver) throw unauthenticated("Token revoked", { token: true });
    const message = requestMessage(request) as unknown as Record<string, unknown> | undefined;
    const resourceId = rule.resourceField && message ? String(message[rule.resourceField.localName] ?? "") : undefined;
    const scopes = new Set(claims.scope.split(/\s+/).filter(Boolean));
    if (!hasScope(scopes, rule.scope, resourceId)) throw new ConnectError("Insufficient scope", Code.PermissionDenied);
    request.contextValues.set(kClient, { id: claims.sub, scopes });
    return next(request);
  };
}
