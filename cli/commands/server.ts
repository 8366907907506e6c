import { once } from "node:events";
import { startServer } from "../../src/server/server.ts";
import { FastpubsubCommand } from "../command.ts";

export default class Server extends FastpubsubCommand {
  static override summary = "Migrate the database, then serve the API until SIGINT or SIGTERM.";
  static override description =
    "Serves Connect, gRPC, gRPC-Web, the REST paths, /liveness and /readiness on FASTPUBSUB_API_HOST:FASTPUBSUB_API_PORT. " +
    "Without FASTPUBSUB_DATABASE_URL it starts an embedded PostgreSQL under ./.fastpubsub/.";

  async run() {
    const { config, logger } = this.setup();
    const server = await startServer(config, logger);
    const signal = await Promise.race([once(process, "SIGINT"), once(process, "SIGTERM")]);
    logger.info("shutting down", { signal: String(signal[0] ?? "") });
    await server.close();
    logger.info("stopped");
  }
}
