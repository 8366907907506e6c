import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AuthService } from "../../gen/fastpubsub/v1/auth_service_pb.ts";
import { verifySecret } from "../auth/client-secrets.ts";
import type { Tokens } from "../auth/tokens.ts";
import * as clients from "../db/clients.ts";
import { connectErrorFromDatabaseError } from "../db/errors.ts";
import type { DatabaseConnection } from "../db/pool.ts";

const invalidClient = (reason: string) => new ConnectError(reason, Code.Unauthenticated);

/** Implements AuthService: client credentials for a signed access token. */
export function createAuthService(db: DatabaseConnection, tokens: Tokens | undefined): ServiceImpl<typeof AuthService> {
  return {
    async createToken(request) {
      if (!tokens) {
        throw new ConnectError("tokens need FASTPUBSUB_AUTH_SECRET_KEY, which is not set", Code.FailedPrecondition);
      }
      const client = await clients.getClient(db, request.clientId).catch((error: unknown) => {
        throw connectErrorFromDatabaseError(error)?.code === Code.NotFound ? invalidClient("Client not found") : error;
      });
      if (!client.is_active) throw invalidClient("Client disabled");
      if (!(await verifySecret(request.clientSecret, client.secret_hash))) throw invalidClient("Client secret is invalid");
      const accessToken = await tokens.issue({ sub: client.id, scope: client.scopes, ver: client.token_version });
      return { accessToken, tokenType: "Bearer", expiresIn: tokens.lifetimeSeconds, scope: client.scopes };
    },
  };
}
