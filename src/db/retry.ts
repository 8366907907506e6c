import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../logger.ts";
import { isDatabaseUnavailable } from "./errors.ts";

/** A run of retryWhileUnavailable, as its caller follows it. */
export interface Retrying<T> {
  /** Resolves with the first attempt that succeeds; rejects with the failure that ended the run. */
  done: Promise<T>;
  /** Settles once the first attempt has succeeded or failed for want of an answer (the run goes on); rejects with any other failure. */
  firstTry: Promise<void>;
  /** Settles with the failure that ended the run, unless the caller's `signal` ended it. */
  failed: Promise<Error>;
}

const never = new Promise<never>(() => {});

/**
 * Runs `attempt` until it succeeds, waiting between tries (0.25 s, doubling
 * up to 2 s) as long as it fails because PostgreSQL does not answer; any
 * other failure ends the run, and so does `signal`. The first such failure is
 * logged as a warning with `message`, the later ones at debug level.
 */
export function retryWhileUnavailable<T>(
  attempt: () => Promise<T>,
  options: { signal: AbortSignal; logger: Logger; message: string },
): Retrying<T> {
  let triedOnce = () => {};
  const firstFailure = new Promise<void>((resolve) => {
    triedOnce = resolve;
  });
  const done = (async () => {
    for (let waitMs = 250; ; waitMs = Math.min(waitMs * 2, 2_000)) {
      options.signal.throwIfAborted();
      try {
        return await attempt();
      } catch (error) {
        if (!isDatabaseUnavailable(error)) throw error;
        const fields = { error: String(error), retry_in_ms: waitMs };
        if (waitMs === 250) options.logger.warning(options.message, fields);
        else options.logger.debug(options.message, fields);
        triedOnce();
        await sleep(waitMs, undefined, { signal: options.signal });
      }
    }
  })();
  return {
    done,
    firstTry: Promise.race([done.then(() => {}), firstFailure]),
    failed: done.then(
      () => never,
      (error: unknown) => (options.signal.aborted ? never : (error as Error)),
    ),
  };
}
