import cluster, { type Worker } from "node:cluster";
import { once } from "node:events";
import { AggregatorRegistry, Registry } from "prom-client";
import type { Config } from "../config/config.ts";
import { checkConnectionBudget, primaryConnections } from "../db/connection-budget.ts";
import { createDatabasePool } from "../db/pool.ts";
import { retryWhileUnavailable } from "../db/retry.ts";
import { startMaintenance } from "../jobs/maintenance.ts";
import type { Logger } from "../logger.ts";
import { registerQueueGauges } from "./metrics.ts";
import { provideDatabase, type RunningServer, serve, startServer } from "./server.ts";

// A worker that dies younger than this is respawned after a pause that doubles with each such death.
const youngWorkerMs = 10_000;
const maxRespawnPauseMs = 30_000;

// Messages between a worker and the primary: for /metrics, and a worker's reason to stop the cluster.
interface MetricsRequest {
  kind: "fastpubsub:metrics";
  id: number;
}
interface MetricsAnswer extends MetricsRequest {
  text: string;
}
interface FatalReport {
  kind: "fastpubsub:fatal";
  reason: string;
}

/**
 * Runs FASTPUBSUB_API_NUM_WORKERS worker processes serving one port (node:cluster).
 * The primary provides the database, checks that the workers' connections fit
 * in it, runs the cleanup and maintenance jobs, answers the workers' /metrics
 * with all workers' metrics aggregated and its own queue gauges (one query per
 * scrape, whatever the number of workers), replaces a worker that dies (after
 * a growing pause when workers keep dying young; a worker that reports a
 * reason respawning cannot cure stops the cluster), and on stop asks every
 * worker to finish its in-flight requests and exit. Each worker migrates the
 * database and serves, retrying while PostgreSQL does not answer.
 */
export async function runPrimary(config: Config, logger: Logger): Promise<{ close(): Promise<void>; failed: Promise<Error> }> {
  const { url, embedded } = await provideDatabase(config, logger);
  const db = createDatabasePool(url, { maxPoolSize: primaryConnections, acquireTimeoutMs: config.databasePoolTimeoutSeconds * 1000 });
  const stopping = new AbortController();
  const checked = retryWhileUnavailable(() => checkConnectionBudget(db, config, logger), {
    signal: stopping.signal,
    logger,
    message: "the database does not answer; the workers serve 503 until it does",
  });
  try {
    await checked.firstTry;
  } catch (error) {
    await db.end();
    await embedded?.stop();
    throw error;
  }
  const stopMaintenance = startMaintenance(db, url, config, logger);
  const aggregator = new AggregatorRegistry();
  const queueGauges = new Registry();
  registerQueueGauges(queueGauges, db, logger);
  const metricsText = async () => `${await aggregator.clusterMetrics()}\n${await queueGauges.metrics()}`;
  const respawns = new Set<NodeJS.Timeout>();
  // A worker that cannot serve for a reason respawning cannot cure (e.g. a changed migration) stops the cluster.
  let fatal: Error | undefined;
  let workerFailed = (_error: Error) => {};
  const workerFailure = new Promise<Error>((resolve) => {
    workerFailed = (error) => {
      fatal ??= error;
      resolve(fatal);
    };
  });
  let youngDeaths = 0;

  // The workers accept connections themselves. The primary's round-robin hands each accepted
  // connection to a worker, and one handed to a worker that is killed before taking it stays
  // open in the primary, unanswered, for good.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const fork = () => {
    const started = Date.now();
    const worker = cluster.fork({ FASTPUBSUB_DATABASE_URL: url });
    worker.on("message", (message: MetricsRequest | FatalReport) => {
      if (message?.kind === "fastpubsub:fatal") workerFailed(new Error(message.reason));
      if (message?.kind !== "fastpubsub:metrics") return;
      metricsText().then(
        (text) => worker.send({ ...message, text } satisfies MetricsAnswer),
        (error: unknown) => worker.send({ ...message, text: `# metrics unavailable: ${String(error)}\n` } satisfies MetricsAnswer),
      );
    });
    worker.once("exit", (code, signal) => {
      if (stopping.signal.aborted || fatal) return;
      youngDeaths = Date.now() - started < youngWorkerMs ? youngDeaths + 1 : 0;
      const pauseMs = youngDeaths === 0 ? 0 : Math.min(maxRespawnPauseMs, 500 * 2 ** (youngDeaths - 1));
      logger.error("worker died; starting another", { pid: worker.process.pid, code, signal, pause_ms: pauseMs });
      const timer = setTimeout(() => {
        respawns.delete(timer);
        fork();
      }, pauseMs);
      respawns.add(timer);
    });
  };
  for (let n = 0; n < config.apiNumWorkers; n++) fork();
  const listening = once(cluster, "listening") as Promise<[Worker, { address: string; port: number }]>;
  const first = await Promise.race([listening, workerFailure]);
  if (first instanceof Error) {
    await close();
    throw first;
  }
  const [, address] = first;
  const host = address.address.includes(":") ? `[${address.address}]` : address.address;
  logger.info("fastpubsub is serving", { url: `http://${host}:${address.port}`, workers: config.apiNumWorkers });

  return { close, failed: Promise.race([checked.failed, workerFailure]) };

  async function close() {
    stopping.abort();
    // No job starts once shutting down; one in progress ends while the workers drain.
    const maintenanceStopped = stopMaintenance();
    for (const timer of respawns) clearTimeout(timer);
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
    await checked.done.catch(() => {});
    await maintenanceStopped;
    await db.end();
    await embedded?.stop();
  }
}

/**
 * Serves as FASTPUBSUB_API_NUM_WORKERS asks: in this process alone, as the
 * primary of several workers, or as one of those workers.
 */
export function startServing(config: Config, logger: Logger): Promise<{ close(): Promise<void>; failed: Promise<Error> }> {
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
  const reportFatal = (error: Error) => process.send?.({ kind: "fastpubsub:fatal", reason: error.message } satisfies FatalReport);
  // This worker answers the primary's requests for its metrics from the start (with none
  // until it serves), so that a scrape never waits on a worker that is still starting.
  AggregatorRegistry.setRegistries([]);
  new AggregatorRegistry();
  const server = await serve(config, logger, config.databaseUrl ?? "", {
    maintenance: false,
    renderMetrics,
    queueGauges: false,
    checkBudget: false,
  }).catch((error: Error) => {
    reportFatal(error);
    throw error;
  });
  void server.failed.then(reportFatal);
  AggregatorRegistry.setRegistries([server.metrics]);
  return server;
}
