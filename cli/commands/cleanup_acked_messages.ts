import { cleanupAckedMessages } from "../../src/db/messages.ts";
import { FastpubsubCommand } from "../command.ts";
import { withDatabase } from "../database.ts";

export default class CleanupAckedMessages extends FastpubsubCommand {
  static override summary = "Forget the acks older than FASTPUBSUB_CLEANUP_ACKED_MESSAGES_OLDER_THAN_SECONDS.";
  static override description =
    "A message is deleted when it is acked; what stays is the count of acks, which the subscription metrics show as acked. " +
    "This drops the acks older than the threshold from that count. Acks that the maintenance has folded into one row per " +
    "subscription and minute are dropped together, once the last of their minute is older than the threshold. The server also " +
    "does this in-process every FASTPUBSUB_CLEANUP_ACKED_MESSAGES_INTERVAL_SECONDS, so running it from cron is optional. " +
    "Safe with several servers.";

  async run() {
    const { config, logger } = this.setup();
    logger.info("Starting cleanup_acked_messages command");
    const forgotten = await withDatabase(config, logger, (db) => cleanupAckedMessages(db, config.cleanupAckedMessagesOlderThanSeconds));
    this.log(`forgot ${forgotten} acks older than ${config.cleanupAckedMessagesOlderThanSeconds} seconds`);
    logger.info("Finishing cleanup_acked_messages command");
  }
}
