import { LRUCache } from "lru-cache";
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

/** The application_name of the listening connection, as pg_stat_activity shows it. */
export const listenerName = "fastpubsub listener";

/** How often the listening connection must prove it is alive, and how long its answer may take. */
export const heartbeat = { everyMs: 5_000, deadlineMs: 3_000 };

/**
 * Answers "may this client use its tokens?" without a database round trip at
 * steady state: states are cached (the 10,000 most recently used), and every
 * server drops a client's entry when update_client or delete_client notifies
 * channel fastpubsub_clients. The listening connection answers a heartbeat
 * every few seconds; when it is lost, or silent past the deadline (a socket
 * dropped without a word), nothing is cached (every check asks the database)
 * and it reconnects every second.
 */
export function createClientStates(options: { url: string; db: DatabasePool; logger: Logger }) {
  // A client that does not exist is cached too, as `missing`.
  const cache = new LRUCache<string, ClientState | "missing">({ max: 10_000 });
  // Bumped by every notification and reconnection: a state read from the
  // database is cached only if nothing was invalidated while it was read.
  let epoch = 0;
  let listening = false;
  let reconnecting = false;
  let closed = false;
  let listener: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  let beat: NodeJS.Timeout | undefined;

  const invalidateAll = () => {
    epoch++;
    cache.clear();
  };

  const lost = (error?: unknown) => {
    if (closed || reconnecting) return;
    reconnecting = true;
    clearInterval(beat);
    if (listening) {
      options.logger.warning("client revocation channel lost; checking every token against the database until it is back", {
        error: String(error ?? "connection ended"),
      });
    }
    listening = false;
    invalidateAll();
    void listener?.end().catch(() => {});
    retry = setTimeout(() => {
      reconnecting = false;
      void listen();
    }, 1_000);
    retry.unref();
  };

  /** Asks the listening connection for an answer within the deadline; a silent one is lost. */
  const checkAlive = (client: pg.Client) => {
    const deadline = setTimeout(() => lost(new Error(`no heartbeat answer within ${heartbeat.deadlineMs} ms`)), heartbeat.deadlineMs);
    client.query("SELECT 1").then(
      () => clearTimeout(deadline),
      (error: unknown) => {
        clearTimeout(deadline);
        lost(error);
      },
    );
  };

  async function listen() {
    if (closed) return;
    const client = new pg.Client({
      connectionString: options.url,
      application_name: listenerName,
      connectionTimeoutMillis: heartbeat.deadlineMs,
      keepAlive: true,
    });
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
      if (listener !== client || reconnecting) return;
      invalidateAll();
      listening = true;
      beat = setInterval(() => checkAlive(client), heartbeat.everyMs);
      beat.unref();
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
      if (cached !== undefined) return cached === "missing" ? undefined : cached;
      const readAt = epoch;
      const row = await getClientTokenState(options.db, clientId);
      const state = row ? { isActive: row.is_active, tokenVersion: row.token_version } : undefined;
      if (listening && readAt === epoch) cache.set(clientId, state ?? "missing");
      return state;
    },

    /** Stops listening. */
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(beat);
      // A connection that went silent may never confirm its end.
      const ended = listener?.end().catch(() => {});
      await Promise.race([ended, new Promise((done) => setTimeout(done, heartbeat.deadlineMs).unref())]);
    },
  };
}

/** The cached client states of one server. */
export type ClientStates = ReturnType<typeof createClientStates>;
