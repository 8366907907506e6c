import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.ts";

/** What the health service reports on. */
export interface HealthServiceOptions {
  /** Whether the server is ready to serve: the same check /readiness answers with. */
  ready: () => Promise<boolean>;
  /** The services that can be asked about by name; "" (the whole server) always can. */
  services: readonly string[];
  /** Aborted when the server shuts down: from then on every status is NOT_SERVING, and every Watch ends. */
  stopping: AbortSignal;
  /** How often a watched status is checked again. */
  watchIntervalMs: number;
}

/**
 * Implements gRPC's standard health service (grpc.health.v1.Health, as
 * Kubernetes `grpc:` probes call it): every known service is SERVING while the
 * server is ready and NOT_SERVING otherwise, since they all stand or fall with
 * the database. An unknown name is not_found (Check) or SERVICE_UNKNOWN (Watch).
 */
export function createHealthService(options: HealthServiceOptions): ServiceImpl<typeof Health> {
  const known = new Set(["", ...options.services]);
  const status = async () => {
    if (options.stopping.aborted) return Status.NOT_SERVING;
    const ready = await options.ready().catch(() => false);
    return ready && !options.stopping.aborted ? Status.SERVING : Status.NOT_SERVING;
  };
  const nextStatus = createSharedPoll(status, options.watchIntervalMs);
  return {
    async check(request) {
      if (!known.has(request.service)) throw new ConnectError(`unknown service ${request.service}`, Code.NotFound);
      return { status: await status() };
    },
    async list() {
      const now = await status();
      return { statuses: Object.fromEntries([...known].map((name) => [name, { status: now }])) };
    },
    async *watch(request, context) {
      const ended = AbortSignal.any([context.signal, options.stopping]);
      if (!known.has(request.service)) {
        // The spec keeps the call open: the service could become known later (ours never does).
        yield { status: Status.SERVICE_UNKNOWN };
        await aborted(ended);
        return;
      }
      let sent = await status();
      yield { status: sent };
      for (;;) {
        const now = await untilAborted(nextStatus(), ended);
        if (now === undefined) break;
        if (now !== sent) {
          sent = now;
          yield { status: now };
        }
      }
      // A watcher learns that the server is going away before its call ends.
      if (options.stopping.aborted && !context.signal.aborted && sent !== Status.NOT_SERVING) yield { status: Status.NOT_SERVING };
    },
  };
}

/**
 * Returns a function that resolves with the result of the next run of
 * `check`, `intervalMs` from the first call that asked for it: however many
 * callers wait, each interval runs `check` once.
 */
function createSharedPoll<T>(check: () => Promise<T>, intervalMs: number): () => Promise<T> {
  let next: Promise<T> | undefined;
  return () => {
    next ??= new Promise<T>((resolve) => {
      setTimeout(() => {
        next = undefined;
        resolve(check());
      }, intervalMs).unref();
    });
    return next;
  };
}

/** Settles with `promise`'s value, or with undefined as soon as `signal` is aborted. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** Settles once `signal` is aborted. */
function aborted(signal: AbortSignal): Promise<void> {
  return untilAborted(new Promise<void>(() => {}), signal).then(() => {});
}
