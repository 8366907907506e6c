import { setTimeout as sleep } from "node:timers/promises";

/** What one round of probes got: the status of each, or "error" when no answer came within 5 s. */
export interface HealthSample {
  /** When the round began (performance.now()). */
  at: number;
  liveness: number | "error";
  readiness: number | "error";
  /** A REST call of the seed's API, and its body. */
  rest: number | "error";
  restBody: string;
}

async function probe(url: string): Promise<{ status: number | "error"; body: string }> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return { status: response.status, body: await response.text() };
  } catch {
    return { status: "error", body: "" };
  }
}

/**
 * Asks /liveness, /readiness and the REST path `restPath` of the server at
 * `url` every `everyMs`, and keeps every answer.
 */
export function watchHealth(url: string, restPath: string, everyMs = 100) {
  const samples: HealthSample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = performance.now();
      const [liveness, readiness, rest] = await Promise.all([
        probe(`${url}/liveness`),
        probe(`${url}/readiness`),
        probe(`${url}${restPath}`),
      ]);
      samples.push({ at, liveness: liveness.status, readiness: readiness.status, rest: rest.status, restBody: rest.body });
      await sleep(everyMs);
    }
  })();
  return {
    samples,
    /** The samples of rounds begun between `from` and `to`. */
    between: (from: number, to = Number.POSITIVE_INFINITY) => samples.filter((sample) => sample.at >= from && sample.at <= to),
    /** Waits for a round begun after `since` whose readiness answered 200, and returns when that round began. */
    async readyAfter(since: number, timeoutMs = 20_000) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const ready = samples.find((sample) => sample.at > since && sample.readiness === 200);
        if (ready) return ready.at;
        if (performance.now() > deadline) throw new Error(`/readiness did not answer 200 within ${timeoutMs} ms`);
        await sleep(everyMs);
      }
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}
