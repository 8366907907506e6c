import { startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { migrate } from "../../src/db/migrate.ts";
import { FastpubsubCommand } from "../command.ts";

export default class DbMigrate extends FastpubsubCommand {
  static override summary = "Apply the pending database migrations.";
  static override description =
    "Applies each migration in migrations/ that the database has not recorded yet, each in its own transaction, " +
    "under an advisory lock so that several servers can run it at once. Without FASTPUBSUB_DATABASE_URL it migrates the embedded PostgreSQL.";

  async run() {
    const { config, logger } = this.setup();
    logger.info("Starting db-migrate command");
    const embedded = config.databaseUrl
      ? undefined
      : await startEmbeddedPostgres({ baseDir: config.embeddedDataDir, port: config.embeddedPort, logger });
    try {
      const applied = await migrate(config.databaseUrl ?? embedded?.url ?? "");
      logger.info(applied.length > 0 ? "applied migrations" : "database is up to date", { versions: applied });
    } finally {
      await embedded?.stop();
    }
    logger.info("Finishing db-migrate command");
  }
}
