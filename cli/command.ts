import { ConnectError } from "@connectrpc/connect";
import { Command } from "@oclif/core";
import { type Config, loadConfig } from "../src/config/config.ts";
import { createLogger, type Logger } from "../src/logger.ts";

/** The base of every fastpubsub command: config and logger, and failures reported in one line. */
export abstract class FastpubsubCommand extends Command {
  /** Reads the FASTPUBSUB_* settings and makes the logger they describe. */
  protected setup(): { config: Config; logger: Logger } {
    const config = loadConfig();
    return { config, logger: createLogger({ level: config.logLevel, format: config.logFormatter }) };
  }

  protected override async catch(error: Error & { oclif?: { exit?: number } }): Promise<void> {
    if (error.oclif?.exit === 0) return;
    const reason = error instanceof ConnectError ? error.rawMessage : error.message;
    process.stderr.write(`Error: ${reason.split("\n")[0]}\n`);
    process.exitCode = error.oclif?.exit ?? 1;
  }
}
