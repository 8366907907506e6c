import { readdirSync, readFileSync } from "node:fs";

/** CPU time in µs spent so far by each party of a benchmark run, all of them on this machine. */
export interface CpuTimes {
  /** The load generator and its children: this process (and the baseline's SQL loops), or the Go program of grpc-go. */
  "load generator": number;
  /** The process under test and its children (the server's workers). */
  server: number;
  /** Every PostgreSQL process: backends, WAL writer, checkpointer. */
  PostgreSQL: number;
  /** All CPUs of the machine, busy time (the kernel's network and interrupt work included). */
  machine: number;
}

const ticksToUs = 1e6 / 100; // USER_HZ is 100 on Linux

/**
 * Reads the CPU times of the benchmark's parties from /proc; `serverPid` is the
 * process under test, if any, and `loadGeneratorPid` the load generator.
 */
export function cpuTimes(serverPid?: number, loadGeneratorPid = process.pid): CpuTimes {
  const processes = new Map<number, { parent: number; command: string; ticks: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      // After the command: state, ppid, … utime and stime are the 12th and 13th fields.
      const fields = stat.slice(close + 2).split(" ");
      processes.set(Number(entry), {
        parent: Number(fields[1]),
        command: stat.slice(stat.indexOf("(") + 1, close),
        ticks: Number(fields[11]) + Number(fields[12]),
      });
    } catch {} // the process ended while we read
  }
  const descendsFrom = (pid: number, ancestor: number): boolean => {
    for (let current = pid; current > 1; current = processes.get(current)?.parent ?? 0) {
      if (current === ancestor) return true;
    }
    return false;
  };
  const times: CpuTimes = { "load generator": 0, server: 0, PostgreSQL: 0, machine: 0 };
  for (const [pid, { command, ticks }] of processes) {
    // The server first: when this process is the load generator, the server is its child.
    if (serverPid !== undefined && descendsFrom(pid, serverPid)) times.server += ticks * ticksToUs;
    else if (descendsFrom(pid, loadGeneratorPid)) times["load generator"] += ticks * ticksToUs;
    else if (command === "postgres") times.PostgreSQL += ticks * ticksToUs;
  }
  // The first line of /proc/stat: user nice system idle iowait irq softirq steal …
  const [user, nice, system, , , irq, softirq, steal] = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
    .split(/\s+/)
    .slice(1)
    .map(Number);
  times.machine = ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) * ticksToUs;
  return times;
}

/** The CPU each party spent per message between two readings. */
export function cpuPerMessage(start: CpuTimes, end: CpuTimes, messages: number) {
  const perMessage = {} as CpuTimes;
  for (const party of Object.keys(start) as (keyof CpuTimes)[]) {
    perMessage[party] = messages > 0 ? (end[party] - start[party]) / messages : 0;
  }
  return perMessage;
}
