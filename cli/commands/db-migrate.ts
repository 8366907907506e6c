import { migrate } from "../../src/db/migrate.ts";
import { FastpubsubCommand } from "../command.ts";
import { withDatabaseUrl } from "../database.ts";

export default class DbMigrate extends FastpubsubCommand {
  static override summary = "Apply the pending database migrations.";
  static override description =
    "Applies each migration in migrations/ that the database has not recorded yet, each in its own transaction, " +
    "under an advisory lock so that several servers can run it at once. Without FASTPUBSUB_DATABASE_URL it migrates the embedded PostgreSQL.";

  async run() {
    const { config, logger } = this.setup();
    logger.info("Starting db-migrate command");
    const applied = await withDatabaseUrl(config, logger, migrate);
    logger.info(applied.length > 0 ? "applied migrations" : "database is up to date", { versions: applied });
    logger.info("Finishing db-migrate command");
  }
}
