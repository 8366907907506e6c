import type { Config } from "../config/config.ts";
import { openDatabase } from "../db/database.ts";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../db/embedded.ts";
import { migrate } from "../db/migrate.ts";
import type { Logger } from "../logger.ts";
import { createClientStates } from "../services/client-states.ts";
import { startMaintenance } from "../services/maintenance.ts";
import { createRoutes, services } from "../services/routes.ts";
import { createTokens } from "../services/tokens.ts";
import { createRequestHandler } from "./handler.ts";
import { accessRules, createAuthInterceptor } from "./interceptors/auth.ts";
import { createErrorInterceptor } from "./interceptors/errors.ts";
import { createValidationInterceptor } from "./interceptors/validation.ts";
import { listen } from "./listener.ts";

/** A running server. */
export interface RunningServer {
  /** Where it listens, e.g. `http://127.0.0.1:8000`. */
  url: string;
  /** Stops accepting, finishes in-flight requests, and closes the database. */
  close(): Promise<void>;
}

/** The largest request body accepted, in bytes. */
export const readMaxBytes = 16 * 1024 * 1024;

/**
 * Starts fastpubsub: opens the configured database (or starts the embedded
 * one when none is configured), applies pending migrations, and serves every
 * protocol on FASTPUBSUB_API_HOST:FASTPUBSUB_API_PORT.
 */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (databaseUrl === undefined) {
    embedded = await startEmbeddedPostgres({ baseDir: config.embeddedDataDir, port: config.embeddedPort, logger });
    databaseUrl = embedded.url;
  }
  try {
    const applied = await migrate(databaseUrl);
    if (applied.length > 0) logger.info("applied migrations", { versions: applied });
    const db = await openDatabase(databaseUrl, {
      poolSize: config.databasePoolSize,
      maxOverflow: config.databaseMaxOverflow,
      echo: config.databaseEcho ? logger : undefined,
    });
    const rules = accessRules(services);
    const tokens = config.authSecretKey ? createTokens(config) : undefined;
    const states = config.authEnabled && tokens ? createClientStates({ url: databaseUrl, db: db.pool, logger }) : undefined;
    await states?.start();
    const interceptors = [createErrorInterceptor(logger)];
    if (states && tokens) interceptors.push(createAuthInterceptor({ rules, tokens, states }));
    interceptors.push(createValidationInterceptor());
    const handler = createRequestHandler({
      routes: createRoutes(db, config, tokens),
      interceptors,
      db: db.pool,
      logger,
      corsOrigins: config.apiCorsOrigins,
      readMaxBytes,
    });
    const listener = await listen(handler, config.apiHost, config.apiPort);
    const stopMaintenance = startMaintenance(db.pool, config, logger);
    logger.info("fastpubsub is serving", { url: listener.url, embedded_database: embedded !== undefined });
    return {
      url: listener.url,
      async close() {
        await listener.close();
        await stopMaintenance();
        await states?.close();
        await db.end();
        await embedded?.stop();
      },
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
}
