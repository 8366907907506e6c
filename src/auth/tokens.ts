import { errors, jwtVerify, SignJWT } from "jose";
import { LRUCache } from "lru-cache";
import type { Config } from "../config/config.ts";

/** What an access token says of its client. */
export interface TokenClaims {
  /** The client's id. */
  sub: string;
  /** The client's space-separated scopes when the token was issued. */
  scope: string;
  /** The client's token_version when the token was issued. */
  ver: number;
}

type Settings = Pick<Config, "authSecretKey" | "authAlgorithm" | "authAccessTokenExpireMinutes">;

/** InvalidTokenError reports a token that is malformed, forged, expired or of another algorithm. */
export class InvalidTokenError extends Error {
  override name = "InvalidTokenError";
}

/**
 * Signs and checks access tokens: JWTs with the seed's claims (sub, exp, iat,
 * scope, ver). A token whose signature checked out is remembered until it
 * expires (the 10,000 most recently used), so that a client's later calls skip the HMAC.
 */
export function createTokens(settings: Settings) {
  const key = new TextEncoder().encode(settings.authSecretKey ?? "");
  const lifetimeSeconds = settings.authAccessTokenExpireMinutes * 60;
  const verified = new LRUCache<string, TokenClaims>({ max: 10_000 });
  return {
    lifetimeSeconds,

    /** Issues a token for a client. */
    issue(claims: TokenClaims): Promise<string> {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ scope: claims.scope, ver: claims.ver })
        .setProtectedHeader({ alg: settings.authAlgorithm, typ: "JWT" })
        .setSubject(claims.sub)
        .setIssuedAt(now)
        .setExpirationTime(now + lifetimeSeconds)
        .sign(key);
    },

    /** Checks a token's signature (with the configured algorithm only), expiry and claims. */
    async verify(token: string): Promise<TokenClaims> {
      const remembered = verified.get(token);
      if (remembered) return remembered;
      try {
        const { payload } = await jwtVerify(token, key, { algorithms: [settings.authAlgorithm], requiredClaims: ["sub", "exp"] });
        if (typeof payload.sub !== "string" || typeof payload.scope !== "string" || typeof payload.ver !== "number") {
          throw new InvalidTokenError("token lacks the sub, scope or ver claim");
        }
        const claims = { sub: payload.sub, scope: payload.scope, ver: payload.ver };
        verified.set(token, claims, { ttl: (payload.exp ?? 0) * 1000 - Date.now() });
        return claims;
      } catch (error) {
        if (error instanceof InvalidTokenError || error instanceof errors.JOSEError || error instanceof TypeError) {
          throw new InvalidTokenError(error.message);
        }
        throw error;
      }
    },
  };
}

/** Signs and checks access tokens. */
export type Tokens = ReturnType<typeof createTokens>;
