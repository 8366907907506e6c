import { LRUCache } from "lru-cache";
import { getClientTokenState } from "../db/clients.ts";
import type { Notifications } from "../db/notifications.ts";
import type { DatabasePool } from "../db/pool.ts";

/** Whether a client may use its tokens, and the token_version they must carry. */
export interface ClientState {
  isActive: boolean;
  tokenVersion: number;
}

const channel = "fastpubsub_clients";

/**
 * Answers "may this client use its tokens?" without a database round trip at
 * steady state: states are cached (the 10,000 most recently used), and every
 * server drops a client's entry when update_client or delete_client notifies
 * channel fastpubsub_clients. While the server's listening connection is lost
 * or silent (see createNotifications), nothing is cached: every check asks the
 * database.
 */
export function createClientStates(options: { notifications: Notifications; db: DatabasePool }) {
  // A client that does not exist is cached too, as `missing`.
  const cache = new LRUCache<string, ClientState | "missing">({ max: 10_000 });
  // Bumped by every notification and every change of listening: a state read
  // from the database is cached only if nothing was invalidated while it was read.
  let epoch = 0;
  const invalidateAll = () => {
    epoch++;
    cache.clear();
  };
  options.notifications.subscribe(channel, {
    notified(clientId) {
      epoch++;
      if (clientId) cache.delete(clientId);
    },
    listening: invalidateAll,
    lost: invalidateAll,
  });

  return {
    /** Returns a client's state, or undefined for a client that does not exist. */
    async get(clientId: string): Promise<ClientState | undefined> {
      const listening = options.notifications.listening;
      const cached = listening ? cache.get(clientId) : undefined;
      if (cached !== undefined) return cached === "missing" ? undefined : cached;
      const readAt = epoch;
      const row = await getClientTokenState(options.db, clientId);
      const state = row ? { isActive: row.is_active, tokenVersion: row.token_version } : undefined;
      if (listening && readAt === epoch) cache.set(clientId, state ?? "missing");
      return state;
    },
  };
}

/** The cached client states of one server. */
export type ClientStates = ReturnType<typeof createClientStates>;
