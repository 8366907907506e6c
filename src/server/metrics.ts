import { ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Database } from "../db/database.ts";
import { getQueueStats } from "../db/messages.ts";
import type { DatabaseConnection } from "../db/pool.ts";
import type { Logger } from "../logger.ts";
import type { Waiting } from "../waiting/waiting.ts";
import { kRestRoute } from "./context.ts";

const durationBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The server's Prometheus metrics, in a registry of its own: the seed's http_requests_total and
 * http_request_duration_seconds, RPC series by procedure, protocol and code,
 * in-flight requests, open streams and waiting long-polls, Node's process
 * metrics, the database pools, and (with
 * `queueGauges`) the queue gauges of every subscription.
 */
export function createMetrics(options: { db: Database; logger: Logger; queueGauges: boolean; waiting: Pick<Waiting, "counts"> }) {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  // A gauge named *_total breaks Prometheus's naming rules (promtool check metrics); each is the sum of the labelled gauge without the suffix.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
    registry.removeSingleMetric(name);
  }
  const httpRequests = new Counter({
    name: "http_requests_total",
    registers,
    help: "Total number of requests by method, path and status",
    labelNames: ["method", "path", "status"],
  });
  const httpDuration = new Histogram({
    name: "http_request_duration_seconds",
    registers,
    help: "Duration of HTTP requests in seconds, by method and path",
    labelNames: ["method", "path"],
    buckets: durationBuckets,
  });
  const inFlight = new Gauge({ name: "http_requests_in_progress", help: "HTTP requests being served", registers });
  const rpcRequests = new Counter({
    name: "fastpubsub_rpc_requests_total",
    registers,
    help: "RPCs handled, by service, method, protocol (connect, grpc, grpc-web, rest) and code",
    labelNames: ["service", "method", "protocol", "code"],
  });
  const rpcDuration = new Histogram({
    name: "fastpubsub_rpc_duration_seconds",
    registers,
    help: "Duration of RPCs in seconds, by service, method and protocol",
    labelNames: ["service", "method", "protocol"],
    buckets: durationBuckets,
  });
  new Gauge({
    name: "fastpubsub_db_pool_connections",
    registers,
    help: "Database connections of each pool (queue: the message hot path; main: everything else), by state",
    labelNames: ["pool", "state"],
    collect() {
      const raw = options.db.queue.raw;
      const main = options.db.pool.state();
      this.set({ pool: "queue", state: "in_use" }, raw.totalCount - raw.idleCount);
      this.set({ pool: "queue", state: "idle" }, raw.idleCount);
      this.set({ pool: "queue", state: "waiting" }, raw.waitingCount);
      this.set({ pool: "main", state: "in_use" }, main.acquiredConnections);
      this.set({ pool: "main", state: "idle" }, main.idleConnections);
      this.set({ pool: "main", state: "waiting" }, main.waitingClients);
    },
  });
  new Gauge({
    name: "fastpubsub_streams_open",
    registers,
    help: "StreamMessages streams open",
    collect() {
      this.set(options.waiting.counts().stream);
    },
  });
  new Gauge({
    name: "fastpubsub_long_polls_waiting",
    registers,
    help: "ConsumeMessages calls waiting for messages (wait_seconds)",
    collect() {
      this.set(options.waiting.counts()["long-poll"]);
    },
  });
  if (options.queueGauges) registerQueueGauges(registry, options.db.pool, options.logger);

  return {
    /** Starts timing an HTTP request; call the result with its route template and status when it ends. */
    startRequest(method: string) {
      inFlight.inc();
      const stop = httpDuration.startTimer({ method });
      return (path: string, status: number) => {
        inFlight.dec();
        stop({ path });
        httpRequests.inc({ method, path, status: String(status) });
      };
    },

    /** The interceptor that counts and times every RPC, whatever its protocol. */
    interceptor: ((next) => async (request) => {
      const labels = { service: request.service.typeName, method: request.method.name, protocol: protocolOf(request) };
      const stop = rpcDuration.startTimer(labels);
      let code = "ok";
      try {
        return await next(request);
      } catch (error) {
        code = codeToString(ConnectError.from(error).code);
        throw error;
      } finally {
        stop();
        rpcRequests.inc({ ...labels, code });
      }
    }) satisfies Interceptor,

    /** The registry holding them all. */
    registry,
    /** Renders the metrics in the Prometheus text format. */
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

/** The server's metrics. */
export type Metrics = ReturnType<typeof createMetrics>;

function protocolOf(request: { header: Headers; contextValues: ContextValues }) {
  if (request.contextValues.get(kRestRoute) !== undefined) return "rest";
  const type = request.header.get("content-type") ?? "";
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/**
 * Registers the gauges of every subscription's messages by state, of its dead
 * letters by reason, of its delayed messages and of the age of its oldest
 * available message, read (mostly from the count deltas) with one query per scrape. A cluster's primary registers them once for all workers.
 */
export function registerQueueGauges(registry: Registry, db: DatabaseConnection, logger: Logger) {
  const registers = [registry];
  // Both queue gauges read one query per scrape; prom-client collects metrics concurrently.
  let scrape: Promise<Awaited<ReturnType<typeof getQueueStats>>> | undefined;
  const queueStats = () => {
    scrape ??= getQueueStats(db)
      .catch((error: unknown) => {
        logger.warning("queue metrics unavailable", { error: String(error) });
        return [];
      })
      .finally(() => setImmediate(() => (scrape = undefined)));
    return scrape;
  };
  new Gauge({
    name: "fastpubsub_subscription_messages",
    registers,
    help: "Messages of each subscription, by state (available, delivered, dlq)",
    labelNames: ["subscription", "state"],
    async collect() {
      this.reset();
      for (const row of await queueStats()) {
        this.set({ subscription: row.subscription_id, state: "available" }, Number(row.available));
        this.set({ subscription: row.subscription_id, state: "delivered" }, Number(row.delivered));
        this.set({ subscription: row.subscription_id, state: "dlq" }, Number(row.dlq));
      }
    },
  });
  new Gauge({
    name: "fastpubsub_subscription_oldest_available_age_seconds",
    registers,
    help: "Age of the oldest message ready to be consumed, per subscription",
    labelNames: ["subscription"],
    async collect() {
      this.reset();
      for (const row of await queueStats()) this.set({ subscription: row.subscription_id }, row.oldest_available_age_seconds);
    },
  });
  new Gauge({
    name: "fastpubsub_subscription_delayed_messages",
    registers,
    help: "Messages of each subscription that were never delivered and are not due yet (published with a delay); also counted as available",
    labelNames: ["subscription"],
    async collect() {
      this.reset();
      for (const row of await queueStats()) this.set({ subscription: row.subscription_id }, Number(row.delayed));
    },
  });
  new Gauge({
    name: "fastpubsub_subscription_dead_letters",
    registers,
    help: `Dead letters of each subscription by reason: ${deadLetterReasons.join(", ")} (every reason a nack with dead_letter gave)`,
    labelNames: ["subscription", "reason"],
    async collect() {
      this.reset();
      for (const row of await queueStats()) {
        for (const reason of deadLetterReasons) {
          this.set({ subscription: row.subscription_id, reason }, row.dlq_by_reason[reason] ?? 0);
        }
      }
    },
  });
}

// The reason labels of dead letters (see dead_letter_reason_label in migrations/0011), each shown even at 0.
const deadLetterReasons = ["max_delivery_attempts", "lease_expired", "nacked"] as const;
