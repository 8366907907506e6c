import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.ts";

describe("loadConfig", () => {
  it("has the seed's defaults", () => {
    expect(loadConfig({})).toMatchObject({
      databaseUrl: undefined,
      databaseEcho: false,
      databasePoolSize: 5,
      databaseMaxOverflow: 10,
      databasePoolPrePing: true,
      databasePreparedStatements: true,
      logLevel: "info",
      logFormatter: "asctime=%(asctime)s level=%(levelname)s pathname=%(pathname)s line=%(lineno)s message=%(message)s",
      subscriptionMaxAttempts: 5,
      subscriptionBackoffMinSeconds: 5,
      subscriptionBackoffMaxSeconds: 300,
      subscriptionAckDeadlineSeconds: 60,
      apiDebug: false,
      apiHost: "0.0.0.0",
      apiPort: 8000,
      apiNumWorkers: 1,
      apiCorsOrigins: [],
      authEnabled: false,
      authSecretKey: undefined,
      authAlgorithm: "HS256",
      authAccessTokenExpireMinutes: 30,
      cleanupAckedMessagesOlderThanSeconds: 3600,
      cleanupStuckMessagesLockTimeoutSeconds: 60,
    });
  });

  it("runs the lease expiry every second and leaves the stuck-message cleanup to cron by default", () => {
    expect(loadConfig({})).toMatchObject({ expireLeasesIntervalSeconds: 1, cleanupStuckMessagesIntervalSeconds: 0 });
  });

  it("accepts the seed's postgresql+psycopg:// URLs as well as postgresql://", () => {
    expect(loadConfig({ FASTPUBSUB_DATABASE_URL: "postgresql+psycopg://u:p@db:5432/app" }).databaseUrl).toBe(
      "postgresql://u:p@db:5432/app",
    );
    expect(loadConfig({ FASTPUBSUB_DATABASE_URL: "postgresql://u:p@db/app" }).databaseUrl).toBe("postgresql://u:p@db/app");
    expect(loadConfig({ FASTPUBSUB_DATABASE_URL: "postgres://db/app" }).databaseUrl).toBe("postgres://db/app");
  });

  it("reads every variable", () => {
    const config = loadConfig({
      FASTPUBSUB_DATABASE_ECHO: "True",
      FASTPUBSUB_DATABASE_POOL_SIZE: "3",
      FASTPUBSUB_DATABASE_PREPARED_STATEMENTS: "off",
      FASTPUBSUB_LOG_LEVEL: "DEBUG",
      FASTPUBSUB_API_HOST: "::1",
      FASTPUBSUB_API_PORT: "9000",
      FASTPUBSUB_API_CORS_ORIGINS: "https://a.example, https://b.example",
      FASTPUBSUB_AUTH_ENABLED: "1",
      FASTPUBSUB_AUTH_SECRET_KEY: "s3cret",
      FASTPUBSUB_AUTH_ALGORITHM: "HS512",
      FASTPUBSUB_SUBSCRIPTION_BACKOFF_MIN_SECONDS: "300",
      FASTPUBSUB_SUBSCRIPTION_ACK_DEADLINE_SECONDS: "600",
      FASTPUBSUB_EXPIRE_LEASES_INTERVAL_SECONDS: "0",
      FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS: "10",
    });
    expect(config).toMatchObject({
      databaseEcho: true,
      databasePoolSize: 3,
      databasePreparedStatements: false,
      logLevel: "debug",
      apiHost: "::1",
      apiPort: 9000,
      apiCorsOrigins: ["https://a.example", "https://b.example"],
      authEnabled: true,
      authSecretKey: "s3cret",
      authAlgorithm: "HS512",
      subscriptionBackoffMinSeconds: 300,
      subscriptionAckDeadlineSeconds: 600,
      expireLeasesIntervalSeconds: 0,
      cleanupStuckMessagesIntervalSeconds: 10,
    });
  });

  it("ignores variables set to the empty string and other prefixes", () => {
    expect(loadConfig({ FASTPUBSUB_API_PORT: "", OTHER_PORT: "x" }).apiPort).toBe(8000);
  });

  it.each([
    ["FASTPUBSUB_DATABASE_URL", "mysql://db/app", "must start with postgresql://"],
    ["FASTPUBSUB_DATABASE_POOL_SIZE", "0", "must be at least 1"],
    ["FASTPUBSUB_DATABASE_ECHO", "maybe", "must be true or false"],
    ["FASTPUBSUB_LOG_LEVEL", "loud", "must be debug, info, warning, error or critical"],
    ["FASTPUBSUB_API_HOST", "localhost", "must be an IP address"],
    ["FASTPUBSUB_API_PORT", "eighty", "must be an integer"],
    ["FASTPUBSUB_API_PORT", "70000", "must be at most 65535"],
    ["FASTPUBSUB_API_NUM_WORKERS", "1.5", "must be an integer"],
    ["FASTPUBSUB_SUBSCRIPTION_MAX_ATTEMPTS", "0", "must be at least 1"],
    ["FASTPUBSUB_AUTH_ALGORITHM", "none", "must be HS256, HS384 or HS512"],
    ["FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS", "-1", "must be at least 1"],
    ["FASTPUBSUB_SUBSCRIPTION_ACK_DEADLINE_SECONDS", "0", "must be at least 1"],
    ["FASTPUBSUB_SUBSCRIPTION_ACK_DEADLINE_SECONDS", "601", "must be at most 600"],
    ["FASTPUBSUB_SUBSCRIPTION_ACK_DEADLINE_SECONDS", "1.5", "must be an integer"],
    ["FASTPUBSUB_EXPIRE_LEASES_INTERVAL_SECONDS", "-1", "must be at least 0"],
  ])("names %s when its value %j is invalid", (name, value, reason) => {
    expect(() => loadConfig({ [name]: value })).toThrow(`${name}: ${reason}`);
  });

  it("refuses a backoff minimum above the maximum", () => {
    expect(() => loadConfig({ FASTPUBSUB_SUBSCRIPTION_BACKOFF_MIN_SECONDS: "301" })).toThrow(
      /^FASTPUBSUB_SUBSCRIPTION_BACKOFF_MAX_SECONDS: must be greater/,
    );
  });

  it("refuses a headers timeout above the request timeout", () => {
    expect(() => loadConfig({ FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS: "61" })).toThrow(
      /^FASTPUBSUB_API_HEADERS_TIMEOUT_SECONDS: must be at most FASTPUBSUB_API_REQUEST_TIMEOUT_SECONDS/,
    );
  });

  it("refuses auth without a secret key", () => {
    expect(() => loadConfig({ FASTPUBSUB_AUTH_ENABLED: "true" })).toThrow(/^FASTPUBSUB_AUTH_SECRET_KEY: is required/);
  });
});
