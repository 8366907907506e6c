import cluster, { type Worker } from "node:cluster";
import { once } from "node:events";
import { AggregatorRegistry, Registry } from "prom-client";
import type { Config } from "../config/config.ts";
import { createDatabasePool } from "../db/pool.ts";
import { startMaintenance } from "../jobs/maintenance.ts";
import type { Logger } from "../logger.ts";
import { registerQueueGauges } from "./metrics.ts";
import { migrateDatabase, provideDatabase, type RunningServer, serve, startServer } from "./server.ts";

// Messages between a worker and the primary, for /metrics.
interface MetricsRequest {
  kind: "fastpubsub:metrics";
  id: number;
}
interface MetricsAnswer extends MetricsRequest {
  text: string;
}

/**
 * Runs FASTPUBSUB_API_NUM_WORKERS worker processes serving one port (node:cluster).
 * The primary provides and migrates the database once, runs the cleanup and
 * maintenance jobs, answers the workers' /metrics with all workers' metrics
 * aggregated and its own queue gauges (one query per scrape, whatever the
 * number of workers), replaces a worker that dies, and on stop asks every
 * worker to finish its in-flight requests and exit.
 */
export async function runPrimary(config: Config, logger: Logger): Promise<{ close(): Promise<void> }> {
  const { url, embedded } = await provideDatabase(config, logger);
  await migrateDatabase(url, logger);
  const db = await createDatabasePool(url, { maxPoolSize: 2 });
  const stopMaintenance = startMaintenance(db, config, logger);
  const aggregator = new AggregatorRegistry();
  const queueGauges = new Registry();
  registerQueueGauges(queueGauges, db, logger);
  const metricsText = async () => `${await aggregator.clusterMetrics()}\n${await queueGauges.metrics()}`;
  let stopping = false;

  const fork = () => {
    const worker = cluster.fork({ FASTPUBSUB_DATABASE_URL: url });
    worker.on("message", (message: MetricsRequest) => {
      if (message?.kind !== "fastpubsub:metrics") return;
      metricsText().then(
        (text) => worker.send({ ...message, text } satisfies MetricsAnswer),
        (error: unknown) => worker.send({ ...message, text: `# metrics unavailable: ${String(error)}\n` } satisfies MetricsAnswer),
      );
    });
    worker.once("exit", (code, signal) => {
      if (stopping) return;
      logger.error("worker died; starting another", { pid: worker.process.pid, code, signal });
      fork();
    });
  };
  for (let n = 0; n < config.apiNumWorkers; n++) fork();
  const [address] = (await once(cluster, "listening")).slice(1) as [{ address: string; port: number }];
  const host = address.address.includes(":") ? `[${address.address}]` : address.address;
  logger.info("fastpubsub is serving", { url: `http://${host}:${address.port}`, workers: config.apiNumWorkers });

  return { close };

  async function close() {
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
    const exited = workers.map((worker) => once(worker, "exit"));
    for (const worker of workers) worker.process.kill("SIGTERM");
    const deadline = setTimeout(
      () => {
        for (const worker of workers) worker.process.kill("SIGKILL");
      },
      (config.apiShutdownTimeoutSeconds + 5) * 1000,
    );
    await Promise.all(exited);
    clearTimeout(deadline);
    await stopMaintenance();
    await db.end();
    await embedded?.stop();
  }
}

/**
 * Serves as FASTPUBSUB_API_NUM_WORKERS asks: in this process alone, as the
 * primary of several workers, or as one of those workers.
 */
export function startServing(config: Config, logger: Logger): Promise<{ close(): Promise<void> }> {
  if (cluster.isWorker) return runWorker(config, logger);
  return config.apiNumWorkers > 1 ? runPrimary(config, logger) : startServer(config, logger);
}

/** Serves as one worker of runPrimary: over the primary's database, with /metrics aggregated by the primary. */
export async function runWorker(config: Config, logger: Logger): Promise<RunningServer> {
  const pending = new Map<number, (text: string) => void>();
  let next = 0;
  process.on("message", (message: MetricsAnswer) => {
    if (message?.kind !== "fastpubsub:metrics") return;
    pending.get(message.id)?.(message.text);
    pending.delete(message.id);
  });
  const renderMetrics = () =>
    new Promise<string>((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      process.send?.({ kind: "fastpubsub:metrics", id } satisfies MetricsRequest);
    });
  const server = await serve(config, logger, config.databaseUrl ?? "", { maintenance: false, renderMetrics, queueGauges: false });
  // This worker answers the primary's requests for its metrics from then on.
  AggregatorRegistry.setRegistries([server.metrics]);
  new AggregatorRegistry();
  return server;
}
