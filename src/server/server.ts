import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Registry } from "prom-client";
import { createClientStates } from "../auth/client-states.ts";
import { createTokens } from "../auth/tokens.ts";
import type { Config } from "../config/config.ts";
import { checkConnectionBudget } from "../db/connection-budget.ts";
import { openDatabase } from "../db/database.ts";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../db/embedded.ts";
import { notify } from "../db/messages.ts";
import { migrate } from "../db/migrate.ts";
import { createNotifications } from "../db/notifications.ts";
import { retryWhileUnavailable } from "../db/retry.ts";
import { startMaintenance } from "../jobs/maintenance.ts";
import type { Logger } from "../logger.ts";
import { createWaiting } from "../waiting/waiting.ts";
import { createGrpcRoutes } from "./grpc-routes.ts";
import { createRequestHandler } from "./handler.ts";
import { readiness } from "./health.ts";
import { accessRules, createAuthInterceptor } from "./interceptors/auth.ts";
import { createErrorInterceptor } from "./interceptors/errors.ts";
import { createSingleRequestInterceptor } from "./interceptors/single-request.ts";
import { createValidationInterceptor } from "./interceptors/validation.ts";
import { type Listener, listen } from "./listener.ts";
import { createMetrics } from "./metrics.ts";
import { createRoutes, services } from "./routes.ts";

/** A running server. */
export interface RunningServer {
  /** Where it listens, e.g. `http://127.0.0.1:8000`. */
  url: string;
  /** Settles with the reason if the server cannot go on serving (e.g. a configuration PostgreSQL cannot hold); close it then. */
  failed: Promise<Error>;
  /** Stops accepting, finishes in-flight requests (for up to FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS), and closes the database. */
  close(): Promise<void>;
}

/** The largest request body accepted, in bytes. */
export const readMaxBytes = 16 * 1024 * 1024;

/** How often a gRPC health Watch checks the database again. */
const healthWatchIntervalMs = 5000;

/** How one server process serves. */
export interface ServeOptions {
  /** Whether this process runs the cleanup and maintenance jobs. */
  maintenance: boolean;
  /** Renders /metrics; by default this process's own metrics. */
  renderMetrics?: () => Promise<string>;
  /** Whether this process's metrics include the queue gauges (a cluster's primary has them instead). */
  queueGauges: boolean;
  /** Whether this process checks that its connections fit in PostgreSQL's (a cluster's primary does it for all). */
  checkBudget: boolean;
}

/**
 * Serves every protocol on FASTPUBSUB_API_HOST:FASTPUBSUB_API_PORT once the
 * database is prepared (the connection budget checked, pending migrations
 * applied). While PostgreSQL does not answer it listens all the same and
 * retries with backoff: until the database is prepared every call gets
 * `unavailable` and /readiness 503.
 */
export async function serve(
  config: Config,
  logger: Logger,
  databaseUrl: string,
  options: ServeOptions,
): Promise<RunningServer & { metrics: Registry }> {
  const db = openDatabase(databaseUrl, config, logger);
  let prepared = false;
  const rules = accessRules(services);
  const tokens = config.authSecretKey ? createTokens(config) : undefined;
  const notifications = createNotifications({
    url: config.databaseListenUrl ?? databaseUrl,
    logger,
    // The heartbeat goes the way the server's own notifications go: through the message pool.
    notify: (channel, payload) => notify(db.queue, channel, payload),
  });
  const states = config.authEnabled && tokens ? createClientStates({ notifications, db: db.pool }) : undefined;
  const waiting = createWaiting({ db, notifications, logger, settings: { maxStreams: config.apiMaxStreams } });
  const metrics = createMetrics({ db, logger, queueGauges: options.queueGauges, waiting });
  const openInterceptors = [metrics.interceptor, createErrorInterceptor(logger)];
  const interceptors = [...openInterceptors, createSingleRequestInterceptor(), refuseUntil(() => prepared)];
  if (states && tokens) interceptors.push(createAuthInterceptor({ rules, tokens, states }));
  interceptors.push(createValidationInterceptor());
  const stopping = new AbortController();
  const apiRoutes = createRoutes(db, config, tokens, waiting);
  const grpcRoutes = createGrpcRoutes({
    apiServices: services,
    health: {
      ready: async () => (await readiness(db, prepared)).status === 200,
      stopping: stopping.signal,
      watchIntervalMs: healthWatchIntervalMs,
    },
    interceptors: openInterceptors,
  });
  const handler = createRequestHandler({
    routes: (router) => {
      apiRoutes(router);
      grpcRoutes(router);
    },
    interceptors,
    readiness: () => readiness(db, prepared),
    logger,
    corsOrigins: config.apiCorsOrigins,
    readMaxBytes,
    metrics,
    renderMetrics: options.renderMetrics ?? metrics.render,
  });
  void notifications.start();

  let stopMaintenance = async () => {};
  const preparing = retryWhileUnavailable(
    async () => {
      if (options.checkBudget) await checkConnectionBudget(db.pool, config, logger);
      await migrateDatabase(databaseUrl, logger);
    },
    { signal: stopping.signal, logger, message: "the database does not answer; serving 503 until it does" },
  );
  const ready = preparing.done.then(() => {
    prepared = true;
    if (options.maintenance) stopMaintenance = startMaintenance(db.pool, databaseUrl, config, logger);
  });
  let listener: Listener | undefined;
  const close = async () => {
    stopping.abort();
    // Long-polls answer at once and streams end, so that they do not hold the shutdown.
    waiting.close();
    // No job starts once shutting down; one in progress ends while the listener drains.
    const maintenanceStopped = ready.catch(() => {}).then(() => stopMaintenance());
    await listener?.close(config.apiShutdownTimeoutSeconds * 1000);
    await maintenanceStopped;
    await notifications.close();
    await db.end();
  };
  try {
    // A database that answers is prepared before the port opens, so no call gets a 503 while it is.
    await preparing.firstTry;
    listener = await listen(handler, {
      host: config.apiHost,
      port: config.apiPort,
      headersTimeoutMs: config.apiHeadersTimeoutSeconds * 1000,
      requestTimeoutMs: config.apiRequestTimeoutSeconds * 1000,
      keepAliveTimeoutMs: config.apiKeepaliveTimeoutSeconds * 1000,
      maxConnections: config.apiMaxConnections,
    });
  } catch (error) {
    await close();
    throw error;
  }
  logger.info("fastpubsub is serving", { url: listener.url });
  return { url: listener.url, metrics: metrics.registry, failed: preparing.failed, close };
}

/** Creates the interceptor that answers every call with `unavailable` until `ready()` says the database is prepared. */
function refuseUntil(ready: () => boolean): Interceptor {
  return (next) => async (request) => {
    if (!ready()) throw new ConnectError("database is unavailable", Code.Unavailable);
    return next(request);
  };
}

/** The database to use: the configured one, or an embedded one started now. */
export async function provideDatabase(config: Config, logger: Logger): Promise<{ url: string; embedded?: EmbeddedDatabase }> {
  if (config.databaseUrl !== undefined) return { url: config.databaseUrl };
  const embedded = await startEmbeddedPostgres({ baseDir: config.embeddedDataDir, port: config.embeddedPort, logger });
  return { url: embedded.url, embedded };
}

/** Applies pending migrations, logging what it applied. */
export async function migrateDatabase(url: string, logger: Logger) {
  const applied = await migrate(url);
  if (applied.length > 0) logger.info("applied migrations", { versions: applied });
}

/**
 * Starts fastpubsub in this process: opens the configured database (or starts
 * the embedded one when none is configured), applies pending migrations, and
 * serves, running the cleanup and maintenance jobs too.
 */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const { url, embedded } = await provideDatabase(config, logger);
  try {
    const server = await serve(config, logger, url, { maintenance: true, queueGauges: true, checkBudget: true });
    if (embedded) logger.info("serving from the embedded PostgreSQL", { data_dir: embedded.dataDir });
    return {
      url: server.url,
      failed: server.failed,
      async close() {
        await server.close();
        await embedded?.stop();
      },
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
}
