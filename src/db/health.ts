import type { Logger } from "../logger.ts";
import { isDatabaseUnavailable } from "./errors.ts";

/** Whether PostgreSQL has been answering one process's calls. */
export interface DatabaseHealth {
  /** Runs a database call, noting whether PostgreSQL answered it (with rows or a refusal) or not. */
  track<T>(call: () => Promise<T>): Promise<T>;
}

/**
 * Creates the health record of one process's database calls; it logs once
 * when PostgreSQL stops answering and once when it answers again, however
 * many calls fail in between.
 */
export function createDatabaseHealth(logger?: Logger): DatabaseHealth {
  let down = false;
  const answered = () => {
    if (!down) return;
    down = false;
    logger?.info("the database answers again");
  };
  const failed = (error: unknown) => {
    if (down) return;
    down = true;
    logger?.error("the database does not answer; calls get unavailable (503) until it does", { error: String(error) });
  };
  return {
    async track(call) {
      try {
        const result = await call();
        answered();
        return result;
      } catch (error) {
        if (isDatabaseUnavailable(error)) failed(error);
        else answered();
        throw error;
      }
    },
  };
}
