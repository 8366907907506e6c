import { cleanupAckedMessages } from "../../src/db/messages.ts";
import { FastpubsubCommand } from "../command.ts";
import { withDatabase } from "../database.ts";

export default class CleanupAckedMessages extends FastpubsubCommand {
  static override summary = "Delete acked messages older than FASTPUBSUB_CLEANUP_ACKED_MESSAGES_OLDER_THAN_SECONDS.";
  static override description =
    "They stop counting as acked in the subscription metrics. The server also does this in-process every " +
    "FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS, so running it from cron is optional. Safe with several servers.";

  async run() {
    const { config, logger } = this.setup();
    logger.info("Starting cleanup_acked_messages command");
    const forgotten = await withDatabase(config, logger, (db) => cleanupAckedMessages(db, config.cleanupAckedMessagesOlderThanSeconds));
    this.log(`deleted ${forgotten} acked messages older than ${config.cleanupAckedMessagesOlderThanSeconds} seconds`);
    logger.info("Finishing cleanup_acked_messages command");
  }
}
