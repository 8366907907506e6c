import { cleanupStuckMessages } from "../../src/db/messages.ts";
import { FastpubsubCommand } from "../command.ts";
import { withDatabase } from "../database.ts";

export default class CleanupStuckMessages extends FastpubsubCommand {
  static override summary = "Release messages locked longer than FASTPUBSUB_CLEANUP_STUCK_MESSAGES_LOCK_TIMEOUT_SECONDS.";
  static override description =
    "Releases them whatever their subscription's ack deadline, leases extended by ModifyAckDeadline included. Each counts " +
    "as a failed delivery: it becomes available again after the subscription's backoff, or goes to the dead-letter queue " +
    "with the reason lease_expired once it has used up max_delivery_attempts. The server releases expired leases itself " +
    "every second; it runs this " +
    "in-process too only when FASTPUBSUB_CLEANUP_STUCK_MESSAGES_INTERVAL_SECONDS is above 0 (the default is 0). Safe with " +
    "several servers.";

  async run() {
    const { config, logger } = this.setup();
    logger.info("Starting cleanup_stuck_messages command");
    const released = await withDatabase(config, logger, (db) => cleanupStuckMessages(db, config.cleanupStuckMessagesLockTimeoutSeconds));
    this.log(`released ${released} messages locked longer than ${config.cleanupStuckMessagesLockTimeoutSeconds} seconds`);
    logger.info("Finishing cleanup_stuck_messages command");
  }
}
