import { Code, ConnectError } from "@connectrpc/connect";

const realm = 'realm="fastpubsub"';

/**
 * Creates the error of a call refused for want of valid credentials:
 * unauthenticated (REST: 401), with the `WWW-Authenticate` challenge of
 * RFC 6750 in its metadata, which says `invalid_token` when the call
 * presented a token that was refused, and comes after a Basic challenge when
 * the client authenticated by HTTP Basic (as RFC 6749 section 5.2 asks).
 */
export function unauthenticated(reason: string, presented: { token?: boolean; basic?: boolean } = {}): ConnectError {
  const metadata = new Headers();
  if (presented.basic) metadata.append("www-authenticate", `Basic ${realm}`);
  // The reasons are fixed texts of this server, free of quotes and backslashes.
  const bearer = presented.token ? `Bearer ${realm}, error="invalid_token", error_description="${reason}"` : `Bearer ${realm}`;
  metadata.append("www-authenticate", bearer);
  return new ConnectError(reason, Code.Unauthenticated, metadata);
}
