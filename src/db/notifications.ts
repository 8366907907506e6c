import { randomUUID } from "node:crypto";
import pg from "pg";
import type { Logger } from "../logger.ts";

/** The application_name of the listening connection, as pg_stat_activity shows it. */
export const listenerName = "fastpubsub listener";

/** How often the listening connection must prove it hears notifications, and how long the proof may take. */
export const heartbeat = { everyMs: 5_000, deadlineMs: 3_000 };

// The channel of the heartbeat's own notifications.
const heartbeatChannel = "fastpubsub_heartbeat";

/** What a channel's subscriber hears. */
export interface ChannelHandlers {
  /** A notification's payload. */
  notified(payload: string): void;
  /** Listening (re)started: anything may have been missed before. */
  listening?(): void;
  /** Listening stopped: until `listening` is heard again, nothing is heard. */
  lost?(): void;
}

/**
 * One dedicated connection that LISTENs on behalf of a whole server process.
 * Every few seconds another session (`notify`, the server's pool) sends it a
 * notification that it must hear within the deadline, which proves the whole
 * path works: a socket dropped without a word, or a connection pooler that
 * cannot keep a LISTEN (PgBouncer in transaction mode, where a session's own
 * notifications still come back to it within its transaction, but those of
 * other sessions are dropped while it sits idle), counts as lost. A lost
 * connection reconnects every second, with one warning when listening stops
 * and one line when it starts again; subscribers hear `lost` and
 * `listening`, so they can fall back meanwhile.
 */
export function createNotifications(options: {
  url: string;
  logger: Logger;
  /** Sends a notification from a session other than the listening one. */
  notify: (channel: string, payload: string) => Promise<void>;
}) {
  const channels = new Map<string, ChannelHandlers[]>();
  let client: pg.Client | undefined;
  let listening = false;
  let reconnecting = false;
  let closed = false;
  let started = false;
  let everListened = false;
  // Whether a warning said that listening stopped, and no line since said that it started again.
  let warned = false;
  let retry: NodeJS.Timeout | undefined;
  let beat: NodeJS.Timeout | undefined;
  const probes = new Map<string, { timer: NodeJS.Timeout; heard: () => void }>();

  const each = (visit: (handlers: ChannelHandlers) => void) => {
    for (const list of channels.values()) for (const handlers of list) visit(handlers);
  };

  const lost = (error?: unknown) => {
    if (closed || reconnecting) return;
    reconnecting = true;
    clearInterval(beat);
    for (const { timer } of probes.values()) clearTimeout(timer);
    probes.clear();
    if (!warned) {
      options.logger.warning("cannot listen for notifications; falling back to polling the database until it can", {
        error: String(error ?? "connection ended"),
      });
      warned = true;
    }
    const wasListening = listening;
    listening = false;
    if (wasListening) each((handlers) => handlers.lost?.());
    void client?.end().catch(() => {});
    retry = setTimeout(() => {
      reconnecting = false;
      void connect();
    }, 1_000);
    retry.unref();
  };

  /** Notifies the listening connection from another session; resolves once it hears that, rejects past the deadline. */
  const probe = () =>
    new Promise<void>((resolve, reject) => {
      const token = randomUUID();
      const timer = setTimeout(() => {
        probes.delete(token);
        reject(new Error(`did not hear the heartbeat notification of another session within ${heartbeat.deadlineMs} ms`));
      }, heartbeat.deadlineMs);
      probes.set(token, { timer, heard: resolve });
      options.notify(heartbeatChannel, token).catch((error: unknown) => {
        clearTimeout(timer);
        probes.delete(token);
        reject(error);
      });
    });

  async function connect() {
    if (closed) return;
    const listener = new pg.Client({
      connectionString: options.url,
      application_name: listenerName,
      connectionTimeoutMillis: heartbeat.deadlineMs,
      keepAlive: true,
    });
    client = listener;
    // A connection given up on may report its end long after; only the current one counts.
    listener.on("error", (error) => client === listener && lost(error));
    listener.on("end", () => client === listener && lost());
    listener.on("notification", ({ channel, payload = "" }) => {
      if (channel === heartbeatChannel) {
        const pending = probes.get(payload);
        probes.delete(payload);
        clearTimeout(pending?.timer);
        pending?.heard();
        return;
      }
      for (const handlers of channels.get(channel) ?? []) handlers.notified(payload);
    });
    try {
      await listener.connect();
      for (const channel of [heartbeatChannel, ...channels.keys()]) await listener.query(`LISTEN ${channel}`);
      await probe();
      if (client !== listener || reconnecting || closed) return;
      options.logger.info(everListened ? "listening for notifications again" : "listening for notifications");
      listening = true;
      everListened = true;
      warned = false;
      each((handlers) => handlers.listening?.());
      beat = setInterval(() => probe().catch(lost), heartbeat.everyMs);
      beat.unref();
    } catch (error) {
      lost(error);
    }
  }

  return {
    /** Hears `channel` (a plain identifier) from now on; call before `start`. */
    subscribe(channel: string, handlers: ChannelHandlers) {
      if (started) throw new Error("subscribe before start");
      channels.set(channel, [...(channels.get(channel) ?? []), handlers]);
    },

    /** Whether notifications are heard now. */
    get listening() {
      return listening;
    },

    /** Starts listening; resolves once the first attempt has succeeded or failed. */
    start() {
      started = true;
      return connect();
    },

    /** Stops listening. */
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(beat);
      for (const { timer } of probes.values()) clearTimeout(timer);
      // A connection that went silent may never confirm its end.
      const ended = client?.end().catch(() => {});
      await Promise.race([ended, new Promise((done) => setTimeout(done, heartbeat.deadlineMs).unref())]);
    },
  };
}

/** The listening connection of one server process. */
export type Notifications = ReturnType<typeof createNotifications>;
