/**
 * The console's connection to the API: clients of the four services over the
 * Connect protocol (the generated TypeScript client, as any browser app would
 * use it), and the session of an operator when authentication is on.
 */
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AuthService } from "../../gen/fastpubsub/v1/auth_service_pb.ts";
import { ClientService } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { SubscriptionService } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { hasScope } from "../../src/auth/scopes.ts";

/** What the console knows of the operator's access. */
export interface Session {
  /** "unknown" until the first call tells whether the server wants a token. */
  auth: "unknown" | "off" | "on";
  /** The access token, kept in memory only; undefined when logged out. */
  token?: string;
  /** The token's scopes, from the token response. */
  scopes: ReadonlySet<string>;
  clientId?: string;
  /** When the token expires, in ms since the epoch. */
  expiresAt?: number;
  /** Why the operator was sent back to the login form. */
  notice?: string;
}

let session: Session = { auth: "unknown", scopes: new Set() };
const listeners = new Set<() => void>();
let renewal: ReturnType<typeof setTimeout> | undefined;

/** The current session. */
export function currentSession(): Session {
  return session;
}

/** Calls `listener` whenever the session changes; returns the function that stops it. */
export function watchSession(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function setSession(next: Session) {
  session = next;
  for (const listener of listeners) listener();
}

// The token goes on every call but CreateToken (which reads an Authorization header as client
// credentials); a refused token ends the session, whichever view made the call.
const bearer: Interceptor = (next) => async (request) => {
  const token = request.service.typeName === AuthService.typeName ? undefined : session.token;
  if (token) request.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(request);
  } catch (error) {
    if (token && token === session.token && error instanceof ConnectError && error.code === Code.Unauthenticated) {
      endSession(`Signed out: ${error.rawMessage}`);
    }
    throw error;
  }
};

// The API is served at the root of the page's origin (or of the path prefix the console sits under).
const transport = createConnectTransport({ baseUrl: new URL(".", location.href).href.replace(/\/$/, ""), interceptors: [bearer] });

/** Clients of the API's services. */
export const api = {
  topics: createClient(TopicService, transport),
  subscriptions: createClient(SubscriptionService, transport),
  clients: createClient(ClientService, transport),
  auth: createClient(AuthService, transport),
};

/** Finds out whether the server wants a token, by a read without one. */
export async function probeAuth(): Promise<void> {
  try {
    await api.topics.listTopics({ limit: 1 });
    setSession({ ...session, auth: "off" });
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.Unauthenticated) setSession({ ...session, auth: "on" });
    else throw error;
  }
}

/** Gets a token for a client's credentials, and keeps renewing it (with the credentials, held in memory only) before it expires. */
export async function signIn(clientId: string, clientSecret: string): Promise<void> {
  const answer = await api.auth.createToken({ clientId, clientSecret, grantType: "client_credentials" });
  const lifetimeMs = answer.expiresIn * 1000;
  setSession({
    auth: "on",
    token: answer.accessToken,
    scopes: new Set(answer.scope.split(/\s+/).filter(Boolean)),
    clientId,
    expiresAt: Date.now() + lifetimeMs,
  });
  clearTimeout(renewal);
  // Renew at four fifths of the lifetime, leaving time to retry a failed renewal.
  renewal = setTimeout(() => renew(clientId, clientSecret), lifetimeMs * 0.8);
}

async function renew(clientId: string, clientSecret: string) {
  try {
    await signIn(clientId, clientSecret);
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.Unauthenticated) {
      endSession(`Signed out: the token could not be renewed (${error.rawMessage})`);
    } else if (session.expiresAt !== undefined && Date.now() < session.expiresAt) {
      renewal = setTimeout(() => renew(clientId, clientSecret), 10_000);
    }
  }
}

/** Forgets the token and the credentials, and shows the login form with `notice`. */
export function endSession(notice?: string): void {
  clearTimeout(renewal);
  setSession({ auth: "on", scopes: new Set(), notice });
}

/** Whether the session may make calls that need `scope`, on `resourceId` when given (as the server decides). */
export function can(scope: string, resourceId?: string): boolean {
  return session.auth === "off" || hasScope(session.scopes, scope, resourceId);
}

/** A failed call's reason, as the console shows it: the Connect code and the server's message. */
export function errorText(error: unknown): string {
  if (error instanceof ConnectError) {
    const code = Code[error.code]?.replace(/[A-Z]/g, (letter, at: number) => (at ? "_" : "") + letter.toLowerCase());
    return `${code}: ${error.rawMessage}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Reads every page of a list call, up to `max` items. */
export async function listAll<T>(page: (offset: number, limit: number) => Promise<{ data: T[] }>, max = 1000): Promise<T[]> {
  const items: T[] = [];
  while (items.length < max) {
    const { data } = await page(items.length, 100);
    items.push(...data);
    if (data.length < 100) break;
  }
  return items;
}
