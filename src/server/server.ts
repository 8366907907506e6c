import type { Registry } from "prom-client";
import { createClientStates } from "../auth/client-states.ts";
import { createTokens } from "../auth/tokens.ts";
import type { Config } from "../config/config.ts";
import { openDatabase } from "../db/database.ts";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../db/embedded.ts";
import { migrate } from "../db/migrate.ts";
import { startMaintenance } from "../jobs/maintenance.ts";
import type { Logger } from "../logger.ts";
import { createRequestHandler } from "./handler.ts";
import { accessRules, createAuthInterceptor } from "./interceptors/auth.ts";
import { createErrorInterceptor } from "./interceptors/errors.ts";
import { createValidationInterceptor } from "./interceptors/validation.ts";
import { listen } from "./listener.ts";
import { createMetrics } from "./metrics.ts";
import { createRoutes, services } from "./routes.ts";

/** A running server. */
export interface RunningServer {
  /** Where it listens, e.g. `http://127.0.0.1:8000`. */
  url: string;
  /** Stops accepting, finishes in-flight requests (for up to FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS), and closes the database. */
  close(): Promise<void>;
}

/** The largest request body accepted, in bytes. */
export const readMaxBytes = 16 * 1024 * 1024;

/** How one server process serves. */
export interface ServeOptions {
  /** Whether this process runs the cleanup and maintenance jobs. */
  maintenance: boolean;
  /** Renders /metrics; by default this process's own metrics. */
  renderMetrics?: () => Promise<string>;
  /** Whether this process's metrics include the queue gauges (a cluster's primary has them instead). */
  queueGauges: boolean;
}

/**
 * Serves every protocol on FASTPUBSUB_API_HOST:FASTPUBSUB_API_PORT over a
 * database that is already migrated.
 */
export async function serve(
  config: Config,
  logger: Logger,
  databaseUrl: string,
  options: ServeOptions,
): Promise<RunningServer & { metrics: Registry }> {
  const db = await openDatabase(databaseUrl, {
    poolSize: config.databasePoolSize,
    maxOverflow: config.databaseMaxOverflow,
    echo: config.databaseEcho ? logger : undefined,
  });
  try {
    const rules = accessRules(services);
    const tokens = config.authSecretKey ? createTokens(config) : undefined;
    const states = config.authEnabled && tokens ? createClientStates({ url: databaseUrl, db: db.pool, logger }) : undefined;
    await states?.start();
    const metrics = createMetrics({ db, logger, queueGauges: options.queueGauges });
    const interceptors = [metrics.interceptor, createErrorInterceptor(logger)];
    if (states && tokens) interceptors.push(createAuthInterceptor({ rules, tokens, states }));
    interceptors.push(createValidationInterceptor());
    const handler = createRequestHandler({
      routes: createRoutes(db, config, tokens),
      interceptors,
      db: db.pool,
      logger,
      corsOrigins: config.apiCorsOrigins,
      readMaxBytes,
      metrics,
      renderMetrics: options.renderMetrics ?? metrics.render,
    });
    const listener = await listen(handler, {
      host: config.apiHost,
      port: config.apiPort,
      headersTimeoutMs: config.apiHeadersTimeoutSeconds * 1000,
      requestTimeoutMs: config.apiRequestTimeoutSeconds * 1000,
      keepAliveTimeoutMs: config.apiKeepaliveTimeoutSeconds * 1000,
      maxConnections: config.apiMaxConnections,
    });
    const stopMaintenance = options.maintenance ? startMaintenance(db.pool, config, logger) : async () => {};
    logger.info("fastpubsub is serving", { url: listener.url });
    return {
      url: listener.url,
      metrics: metrics.registry,
      async close() {
        await listener.close(config.apiShutdownTimeoutSeconds * 1000);
        await stopMaintenance();
        await states?.close();
        await db.end();
      },
    };
  } catch (error) {
    await db.end();
    throw error;
  }
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
    await migrateDatabase(url, logger);
    const server = await serve(config, logger, url, { maintenance: true, queueGauges: true });
    if (embedded) logger.info("serving from the embedded PostgreSQL", { data_dir: embedded.dataDir });
    return {
      url: server.url,
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
