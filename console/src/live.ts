/** Live numbers: a shared refresh tick that pauses while the tab is hidden, and each subscription's recent backlog. */
import { useEffect, useState } from "preact/hooks";

/** The choices of the refresh interval, in seconds (0: off). */
export const refreshChoices = [2, 5, 10, 30, 0] as const;

let intervalSeconds = 5;
let tick = 0;
let timer: ReturnType<typeof setInterval> | undefined;
const listeners = new Set<(tick: number) => void>();

function advance() {
  tick += 1;
  for (const listener of listeners) listener(tick);
}

function restart() {
  clearInterval(timer);
  timer = undefined;
  // A hidden tab asks nothing of the server; it catches up at once when shown again.
  if (intervalSeconds > 0 && !document.hidden) {
    timer = setInterval(advance, intervalSeconds * 1000);
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) advance();
  restart();
});
restart();

/** The refresh interval in seconds. */
export function refreshInterval(): number {
  return intervalSeconds;
}

/** Sets the refresh interval in seconds (0 stops refreshing). */
export function setRefreshInterval(seconds: number): void {
  intervalSeconds = seconds;
  restart();
}

/** Refreshes every live view now, as after an action that changed what they show. */
export function refreshNow(): void {
  advance();
}

/** A number that changes on each refresh: views list it among their effects' dependencies. */
export function useTick(): number {
  const [value, setValue] = useState(tick);
  useEffect(() => {
    listeners.add(setValue);
    return () => {
      listeners.delete(setValue);
    };
  }, []);
  return value;
}

/** One reading of a subscription's backlog. */
export interface Sample {
  at: number;
  /** Messages not yet acked: available plus delivered. */
  backlog: number;
}

/** How far back the backlog charts reach. */
export const historyMs = 10 * 60 * 1000;

const histories = new Map<string, Sample[]>();

/** Records a reading of a subscription's backlog, and returns its readings of the last ten minutes. */
export function recordBacklog(subscriptionId: string, backlog: number): Sample[] {
  const now = Date.now();
  const samples = (histories.get(subscriptionId) ?? []).filter((sample) => sample.at > now - historyMs);
  samples.push({ at: now, backlog });
  histories.set(subscriptionId, samples);
  return samples;
}
