import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AuthService, CreateTokenRequest } from "../../gen/fastpubsub/v1/auth_service_pb.ts";
import { verifySecret } from "../auth/client-secrets.ts";
import type { Tokens } from "../auth/tokens.ts";
import { unauthenticated } from "../auth/unauthenticated.ts";
import * as clients from "../db/clients.ts";
import { connectErrorFromDatabaseError } from "../db/errors.ts";
import type { DatabaseConnection } from "../db/pool.ts";
import { fieldFormats } from "../server/interceptors/field-formats.ts";

const invalid = (reason: string) => new ConnectError(reason, Code.InvalidArgument);

/** Implements AuthService: client credentials for a signed access token. */
export function createAuthService(db: DatabaseConnection, tokens: Tokens | undefined): ServiceImpl<typeof AuthService> {
  return {
    async createToken(request, context) {
      if (!tokens) {
        throw new ConnectError("tokens need FASTPUBSUB_AUTH_SECRET_KEY, which is not set", Code.FailedPrecondition);
      }
      if (request.grantType !== "" && request.grantType !== "client_credentials") {
        throw invalid(
          `grant_type must be client_credentials, the only grant fastpubsub issues tokens for, not ${JSON.stringify(request.grantType)}`,
        );
      }
      const { clientId, clientSecret, basic } = clientCredentials(request, context.requestHeader.get("authorization"));
      const invalidClient = (reason: string) => unauthenticated(reason, { basic });
      const client = await clients.getClient(db, clientId).catch((error: unknown) => {
        throw connectErrorFromDatabaseError(error)?.code === Code.NotFound ? invalidClient("Client not found") : error;
      });
      if (!client.is_active) throw invalidClient("Client disabled");
      if (!(await verifySecret(clientSecret, client.secret_hash))) throw invalidClient("Client secret is invalid");
      const accessToken = await tokens.issue({ sub: client.id, scope: client.scopes, ver: client.token_version });
      return { accessToken, tokenType: "Bearer", expiresIn: tokens.lifetimeSeconds, scope: client.scopes };
    },
  };
}

/**
 * The client's id and secret: from HTTP Basic (RFC 6749 section 2.3.1: each
 * form-encoded, then joined by a colon) or from the request, not both.
 */
function clientCredentials(request: CreateTokenRequest, authorization: string | null) {
  const encoded = /^Basic\s+(\S+)\s*$/i.exec(authorization ?? "")?.[1];
  let { clientId, clientSecret } = request;
  if (encoded !== undefined) {
    const decoded = Buffer.from(encoded, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) throw invalid("the Basic credentials must be client_id:client_secret");
    const [id, secret] = [formDecoded(decoded.slice(0, colon)), formDecoded(decoded.slice(colon + 1))];
    // RFC 6749 lets a client use one way of authenticating per request; an id repeated in the body is harmless.
    if (clientSecret !== "" || (clientId !== "" && clientId !== id)) {
      throw invalid("send the client's credentials either by HTTP Basic or in the request, not both");
    }
    [clientId, clientSecret] = [id, secret];
  }
  if (clientId === "") throw invalid("client_id is required, in the request or by HTTP Basic");
  if (fieldFormats.UUID.check(clientId)) throw invalid("client_id must be a UUID");
  if (clientSecret === "") throw invalid("client_secret is required, in the request or by HTTP Basic");
  return { clientId, clientSecret, basic: encoded !== undefined };
}

function formDecoded(text: string) {
  try {
    return decodeURIComponent(text.replaceAll("+", " "));
  } catch {
    throw invalid("the Basic credentials are not form-encoded");
  }
}
