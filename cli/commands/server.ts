import cluster from "node:cluster";
import { startServing } from "../../src/server/workers.ts";
import { FastpubsubCommand } from "../command.ts";

export default class Server extends FastpubsubCommand {
  static override summary = "Migrate the database, then serve the API until SIGINT or SIGTERM.";
  static override description =
    "Serves Connect, gRPC, gRPC-Web, the REST paths, /liveness, /readiness and /metrics on FASTPUBSUB_API_HOST:FASTPUBSUB_API_PORT, " +
    "with FASTPUBSUB_API_NUM_WORKERS processes. Without FASTPUBSUB_DATABASE_URL it starts an embedded PostgreSQL under ./.fastpubsub/. " +
    "On SIGTERM or SIGINT it stops accepting, lets in-flight requests finish (for up to FASTPUBSUB_API_SHUTDOWN_TIMEOUT_SECONDS), " +
    "closes the database and exits 0. While PostgreSQL does not answer it keeps serving: /liveness 200, /readiness and every call 503, " +
    "until the database is back. It exits non-zero when its connections cannot fit in PostgreSQL's max_connections.";

  async run() {
    const { config, logger } = this.setup();
    // Heard from the start, so that a signal during start-up stops the server once it is up, and for good:
    // proper-lockfile's signal-exit re-raises a signal that it finds no other listener for.
    const signal = new Promise<NodeJS.Signals>((resolve) => {
      for (const name of ["SIGINT", "SIGTERM"] as const) process.on(name, () => resolve(name));
    });
    try {
      const server = await startServing(config, logger);
      const stop = await Promise.race([signal, server.failed]);
      if (stop instanceof Error) {
        await server.close();
        throw stop;
      }
      if (!cluster.isWorker) logger.info("shutting down", { signal: stop });
      await server.close();
      if (!cluster.isWorker) logger.info("stopped");
    } finally {
      // The channel to the primary would keep a worker alive.
      if (cluster.isWorker) process.disconnect?.();
    }
  }
}
