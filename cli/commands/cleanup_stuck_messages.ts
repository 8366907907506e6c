import { cleanupStuckMessages } from "../../src/db/messages.ts";
import { FastpubsubCommand } from "../command.ts";
import { withDatabase } from "../database.ts";

export default class CleanupStuckMessages extends FastpubsubCommand {
  static override summary = "Release messages locked longer than FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS.";
  static override description =
    "Each counts as a failed delivery: it becomes available again after the subscription's backoff, or goes to the " +
    "dead-letter queue once it has used up max_delivery_attempts. The server also does this in-process every " +
    "FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS, so running it from cron is optional. Safe with several servers.";

  async run() {
    const { config, logger } = this.setup();
    logger.info("Starting cleanup_stuck_messages command");
    const released = await withDatabase(config, logger, (db) => cleanupStuckMessages(db, config.cleanupStuckMessagesLockTimeoutSeconds));
    this.log(`released ${released} messages locked longer than ${config.cleanupStuckMessagesLockTimeoutSeconds} seconds`);
    logger.info("Finishing cleanup_stuck_messages command");
  }
}
