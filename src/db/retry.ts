import { setTimeout as sleep } from "node:timers/promises";
import { isDatabaseUnavailable } from "./errors.ts";

/**
 * Runs `attempt` until it succeeds, waiting between tries (0.25 s, doubling
 * up to 2 s) as long as it fails because PostgreSQL does not answer; any
 * other failure ends it, and so does `signal` (with an AbortError).
 * `onRetry` hears each such failure before the wait.
 */
export async function retryWhileUnavailable<T>(
  attempt: () => Promise<T>,
  options: { signal: AbortSignal; onRetry?: (error: unknown, waitMs: number) => void },
): Promise<T> {
  for (let waitMs = 250; ; waitMs = Math.min(waitMs * 2, 2_000)) {
    options.signal.throwIfAborted();
    try {
      return await attempt();
    } catch (error) {
      if (!isDatabaseUnavailable(error)) throw error;
      options.onRetry?.(error, waitMs);
      await sleep(waitMs, undefined, { signal: options.signal });
    }
  }
}
