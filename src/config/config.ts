import { z } from "zod";

const lowercase = z.string().trim().toLowerCase();
/** A yes/no word as the seed's settings accept it (true/false, 1/0, yes/no, on/off, any case). */
export const booleanWord = lowercase
  .pipe(z.enum(["true", "false", "1", "0", "yes", "no", "on", "off"], { error: "must be true or false" }))
  .transform((value) => ["true", "1", "yes", "on"].includes(value));
const integer = (min: number) =>
  z.coerce
    .number({ error: "must be an integer" })
    .int({ error: "must be an integer" })
    .min(min, { error: `must be at least ${min}` });
const LogLevel = lowercase.pipe(
  z.enum(["debug", "info", "warning", "error", "critical"], { error: "must be debug, info, warning, error or critical" }),
);

const databaseUrl = z
  .string()
  .regex(/^postgres(ql)?(\+psycopg)?:\/\//, "must start with postgresql:// (or postgresql+psycopg://)")
  .transform((url) => url.replace(/^postgres(ql)?\+psycopg:/, "postgresql:"));

const Env = z
  .object({
    FASTPUBSUB_DATABASE_URL: databaseUrl.optional(),
    FASTPUBSUB_DATABASE_ECHO: booleanWord.default(false),
    FASTPUBSUB_DATABASE_POOL_SIZE: integer(1).default(5),
    FASTPUBSUB_DATABASE_MAX_OVERFLOW: integer(1).default(10),
    FASTPUBSUB_DATABASE_POOL_PRE_PING: booleanWord.default(true),
    FASTPUBSUB_DATABASE_POOL_TIMEOUT_SECONDS: integer(1).default(5),
    FASTPUBSUB_DATABASE_STATEMENT_TIMEOUT_SECONDS: integer(1).default(10),
    FASTPUBSUB_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS: integer(1).default(60),
    FASTPUBSUB_DATABASE_LISTEN_URL: databaseUrl.optional(),
    FASTPUBSUB_DATABASE_PREPARED_STATEMENTS: booleanWord.default(true),
    FASTPUBSUB_LOG_LEVEL: LogLevel.default("info"),
    FASTPUBSUB_LOG_FORMATTER: z
      .string()
      .min(1)
      .default("asctime=%(asctime)s level=%(levelname)s pathname=%(pathname)s line=%(lineno)s message=%(message)s"),
    FASTPUBSUB_SUBSCRIPTION_MAX_ATTEMPTS: integer(1).default(5),
    FASTPUBSUB_SUBSCRIPTION_BACKOFF_MIN_SECONDS: integer(1).default(5),
    FASTPUBSUB_SUBSCRIPTION_BACKOFF_MAX_SECONDS: integer(1).default(300),
    FASTPUBSUB_SUBSCRIPTION_ACK_DEADLINE_SECONDS: integer(1).max(600, { error: "must be at most 600" }).default(60),
    FASTPUBSUB_API_DEBUG: booleanWord.default(false),
    FASTPUBSUB_API_HOST: z.union([z.ipv4(), z.ipv6()], { error: "must be an IP address" }).default("0.0.0.0"),
    FASTPUBSUB_API_PORT: integer(0).max(65535, { error: "must be at most 65535" }).default(8000),
    FASTPUBSUB_API_NUM_WORKERS: integer(1).default(1),
    FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS: integer(0).default(10),
    FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS: integer(1).default(10),
    FASTPUBSUB_API_REQUEST_TIMEOUT_SECONDS: integer(1).default(60),
    FASTPUBSUB_API_KEEPALIVE_TIMEOUT_SECONDS: integer(1).default(65),
    FASTPUBSUB_API_MAX_CONNECTIONS: integer(1).default(10_000),
    FASTPUBSUB_API_MAX_STREAMS: integer(1).default(1_000),
    FASTPUBSUB_API_CORS_ORIGINS: z
      .string()
      .transform((origins) =>
        origins
          .split(",")
          .map((origin) => origin.trim())
          .filter(Boolean),
      )
      .default([]),
    FASTPUBSUB_AUTH_ENABLED: booleanWord.default(false),
    FASTPUBSUB_AUTH_SECRET_KEY: z.string().min(1).optional(),
    FASTPUBSUB_AUTH_ALGORITHM: z.enum(["HS256", "HS384", "HS512"], { error: "must be HS256, HS384 or HS512" }).default("HS256"),
    FASTPUBSUB_AUTH_ACCESS_TOKEN_EXPIRE_MINUTES: integer(1).default(30),
    FASTPUBSUB_CLEANUP_ACKED_MESSAGES_OLDER_THAN_SECONDS: integer(1).default(3600),
    FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS: integer(1).default(60),
    FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS: integer(0).default(60),
    // Off by default: it would release deliveries whose lease was extended past the threshold.
    FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: integer(0).default(0),
    FASTPUBSUB_EXPIRE_LEASES_INTERVAL_SECONDS: integer(0).default(1),
    FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS: integer(0).default(10),
    FASTPUBSUB_EMBEDDED_DATA_DIR: z.string().min(1).default(".fastpubsub"),
    FASTPUBSUB_EMBEDDED_PORT: integer(1).max(65535, { error: "must be at most 65535" }).default(54329),
  })
  .refine((env) => env.FASTPUBSUB_SUBSCRIPTION_BACKOFF_MAX_SECONDS >= env.FASTPUBSUB_SUBSCRIPTION_BACKOFF_MIN_SECONDS, {
    path: ["FASTPUBSUB_SUBSCRIPTION_BACKOFF_MAX_SECONDS"],
    message: "must be greater than or equal to FASTPUBSUB_SUBSCRIPTION_BACKOFF_MIN_SECONDS",
  })
  .refine((env) => env.FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS <= env.FASTPUBSUB_API_REQUEST_TIMEOUT_SECONDS, {
    path: ["FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS"],
    message: "must be at most FASTPUBSUB_API_REQUEST_TIMEOUT_SECONDS (the headers are part of the request)",
  })
  .refine((env) => !env.FASTPUBSUB_AUTH_ENABLED || env.FASTPUBSUB_AUTH_SECRET_KEY, {
    path: ["FASTPUBSUB_AUTH_SECRET_KEY"],
    message: "is required when FASTPUBSUB_AUTH_ENABLED is true (make one with `npx fastpubsub generate_secret_key`)",
  });

/** The settings of a fastpubsub process, read from FASTPUBSUB_* variables. */
export type Config = ReturnType<typeof configFromEnv>;

/** ConfigError names the variable whose value cannot be used. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses every FASTPUBSUB_* variable, with the seed's defaults, into one validated Config. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([name, value]) => name.startsWith("FASTPUBSUB_") && value !== ""));
  const result = Env.safeParse(present);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ConfigError(`${String(issue?.path[0] ?? "configuration")}: ${issue?.message ?? "invalid value"}`);
  }
  return configFromEnv(result.data);
}

function configFromEnv(env: z.output<typeof Env>) {
  return {
    databaseUrl: env.FASTPUBSUB_DATABASE_URL,
    databaseEcho: env.FASTPUBSUB_DATABASE_ECHO,
    databasePoolSize: env.FASTPUBSUB_DATABASE_POOL_SIZE,
    databaseMaxOverflow: env.FASTPUBSUB_DATABASE_MAX_OVERFLOW,
    databasePoolPrePing: env.FASTPUBSUB_DATABASE_POOL_PRE_PING,
    databasePoolTimeoutSeconds: env.FASTPUBSUB_DATABASE_POOL_TIMEOUT_SECONDS,
    databaseStatementTimeoutSeconds: env.FASTPUBSUB_DATABASE_STATEMENT_TIMEOUT_SECONDS,
    databaseIdleInTransactionTimeoutSeconds: env.FASTPUBSUB_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS,
    databaseListenUrl: env.FASTPUBSUB_DATABASE_LISTEN_URL,
    databasePreparedStatements: env.FASTPUBSUB_DATABASE_PREPARED_STATEMENTS,
    logLevel: env.FASTPUBSUB_LOG_LEVEL,
    logFormatter: env.FASTPUBSUB_LOG_FORMATTER,
    subscriptionMaxAttempts: env.FASTPUBSUB_SUBSCRIPTION_MAX_ATTEMPTS,
    subscriptionBackoffMinSeconds: env.FASTPUBSUB_SUBSCRIPTION_BACKOFF_MIN_SECONDS,
    subscriptionBackoffMaxSeconds: env.FASTPUBSUB_SUBSCRIPTION_BACKOFF_MAX_SECONDS,
    subscriptionAckDeadlineSeconds: env.FASTPUBSUB_SUBSCRIPTION_ACK_DEADLINE_SECONDS,
    apiDebug: env.FASTPUBSUB_API_DEBUG,
    apiHost: env.FASTPUBSUB_API_HOST,
    apiPort: env.FASTPUBSUB_API_PORT,
    apiNumWorkers: env.FASTPUBSUB_API_NUM_WORKERS,
    apiShutdownTimeoutSeconds: env.FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS,
    apiHeadersTimeoutSeconds: env.FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS,
    apiRequestTimeoutSeconds: env.FASTPUBSUB_API_REQUEST_TIMEOUT_SECONDS,
    apiKeepaliveTimeoutSeconds: env.FASTPUBSUB_API_KEEPALIVE_TIMEOUT_SECONDS,
    apiMaxConnections: env.FASTPUBSUB_API_MAX_CONNECTIONS,
    apiMaxStreams: env.FASTPUBSUB_API_MAX_STREAMS,
    apiCorsOrigins: env.FASTPUBSUB_API_CORS_ORIGINS,
    authEnabled: env.FASTPUBSUB_AUTH_ENABLED,
    authSecretKey: env.FASTPUBSUB_AUTH_SECRET_KEY,
    authAlgorithm: env.FASTPUBSUB_AUTH_ALGORITHM,
    authAccessTokenExpireMinutes: env.FASTPUBSUB_AUTH_ACCESS_TOKEN_EXPIRE_MINUTES,
    cleanupAckedMessagesOlderThanSeconds: env.FASTPUBSUB_CLEANUP_ACKED_MESSAGES_OLDER_THAN_SECONDS,
    cleanupStuckMessagesLockTimeoutSeconds: env.FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS,
    cleanupAckedMessagesIntervalSeconds: env.FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS,
    cleanupStuckMessagesIntervalSeconds: env.FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS,
    expireLeasesIntervalSeconds: env.FASTPUBSUB_EXPIRE_LEASES_INTERVAL_SECONDS,
    maintenanceIntervalSeconds: env.FASTPUBSUB_MAINTENANCE_INTERVAL_SECONDS,
    embeddedDataDir: env.FASTPUBSUB_EMBEDDED_DATA_DIR,
    embeddedPort: env.FASTPUBSUB_EMBEDDED_PORT,
  };
}
