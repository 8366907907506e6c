import { expect } from "vitest";
import { diagnosed, type FaultServer } from "./processes.ts";
import type { Workload } from "./workload.ts";

/** A scenario's figures, as its one-line summary prints them. */
export type Summary = ReturnType<Workload["summary"]>;

/** The one line a scenario prints: what was confirmed, what was lost or acked twice, what came back, and how the fault looked to the clients. */
export function summaryLine(scenario: string, summary: Summary, unexpectedExits: number) {
  const recovery = summary.recoveryMs === undefined ? "-" : `${(summary.recoveryMs / 1000).toFixed(2)} s`;
  return (
    `faults | ${scenario} | confirmed ${summary.confirmed}, lost ${summary.lost}, acked twice ${summary.ackedTwice}, ` +
    `redelivered ${summary.redelivered}, duplicates of failed publishes ${summary.duplicatesFromUnconfirmed}, left ${summary.left}, ` +
    `503s while down ${summary.unavailableWhileDown} (${summary.unavailable} in all), connection errors ${summary.connectionErrors}, ` +
    `recovery ${recovery}, unexpected exits ${unexpectedExits}`
  );
}

/**
 * Prints the summary line and expects every message accounted for: none lost,
 * left in the subscription after the drain, acked twice, held by two consumers
 * at once, stored twice or in part.
 */
export function expectAccounted(scenario: string, summary: Summary, unexpectedExits: string[]) {
  console.log(summaryLine(scenario, summary, unexpectedExits.length));
  expect(unexpectedExits).toEqual([]);
  expect(summary.confirmed).toBeGreaterThan(0);
  expect({
    lost: summary.lost,
    left: summary.left,
    ackedTwice: summary.ackedTwice,
    overlapping: summary.overlapping,
    appliedTwice: summary.appliedTwice,
    partial: summary.partial,
  }).toEqual({ lost: 0, left: 0, ackedTwice: 0, overlapping: 0, appliedTwice: 0, partial: 0 });
}

/**
 * Runs a scenario's `steps` (the servers' logs shown if they fail), then stops
 * the workload and whatever `alsoStop` stops, stops the servers, which must
 * exit 0, and expects every message accounted for. Returns the summary.
 */
export async function runAccounted(
  scenario: string,
  servers: FaultServer[],
  workload: Workload,
  steps: () => Promise<void>,
  alsoStop?: () => Promise<unknown>,
): Promise<Summary> {
  try {
    await diagnosed(servers, steps);
  } finally {
    await workload.stop();
    await alsoStop?.();
  }
  const summary = workload.summary();
  const exits = servers.flatMap((server) => server.unexpectedExits());
  for (const server of servers) expect(await server.stop()).toBe(0);
  expectAccounted(scenario, summary, exits);
  return summary;
}
