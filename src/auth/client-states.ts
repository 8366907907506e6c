import pg from "pg";
import { getClientTokenState } from "../db/clients.ts";
import type { DatabasePool } from "../db/pool.ts";
import type { Logger } from "../logger.ts";

/** Whether a client may use its tokens, and the token_version they must carry. */
export interface ClientState {
  isActive: boolean;
  tokenVersion: number;
}

const channel = "fastpubsub_clients";
const maxEntries = 10_000;

/**
 * Answers "may this client use its tokens?" without a database round trip at
 * steady state: states are cached, and every server drops a client's entry
 * when update_client or delete_client notifies channel fastpubsub_clients.
 * While the notification connection is down, nothing is cached (every check
 * asks the database) and it reconnects every second.
 */
export function createClientStates(options: { url: string; db: DatabasePool; logger: Logger }) {
  const cache = new Map<string, ClientState | null>();
  // Bumped by every notification and reconnection: a state read from the
  // database is cached only if nothing was invalidated while it was read.
  let epoch = 0;
  let listening = false;
  let reconnecting = false;
  let closed = false;
  let listener: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;

  const invalidateAll = () => {
    epoch++;
    cache.clear();
  };

  const lost = (error?: unknown) => {
    if (closed || reconnecting) return;
    reconnecting = true;
    listening = false;
    invalidateAll();
    options.logger.warning("client revocation channel lost; checking every token against the database until it is back", {
      error: String(error ?? "connection ended"),
    });
    void listener?.end().catch(() => {});
    retry = setTimeout(() => {
      reconnecting = false;
      void listen();
    }, 1_000);
    retry.unref();
  };

  async function listen() {
    if (closed) return;
    const client = new pg.Client({ connectionString: options.url });
    listener = client;
    client.on("notification", (message) => {
      epoch++;
      if (message.payload) cache.delete(message.payload);
    });
    client.on("error", lost);
    client.on("end", () => lost());
    try {
      await client.connect();
      await client.query(`LISTEN ${channel}`);
      invalidateAll();
      listening = true;
    } catch (error) {
      lost(error);
    }
  }

  return {
    /** Starts listening for revocations. */
    start: listen,

    /** Returns a client's state, or undefined for a client that does not exist. */
    async get(clientId: string): Promise<ClientState | undefined> {
      const cached = listening ? cache.get(clientId) : undefined;
      if (cached !== undefined) return cached ?? undefined;
      const readAt = epoch;
      const row = await getClientTokenState(options.db, clientId);
      const state = row ? { isActive: row.is_active, tokenVersion: row.token_version } : null;
      if (listening && readAt === epoch) {
        if (cache.size >= maxEntries) cache.clear();
        cache.set(clientId, state);
      }
      return state ?? undefined;
    },

    /** Stops listening. */
    async close() {
      closed = true;
      clearTimeout(retry);
      await listener?.end().catch(() => {});
    },
  };
}

/** The cached client states of one server. */
export type ClientStates = ReturnType<typeof createClientStates>;
