import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive, type ServerProcess, startServerProcess } from "../../support/cli.ts";

/** The pids of the running processes whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command may hold spaces and parentheses; the fields after its closing one do not.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent === pid) children.push(Number(entry));
    } catch {}
  }
  return children;
}

/** How many established TCP connections to local port `port` (IPv4) the process `pid` holds. */
export function connectionsOf(pid: number, port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const inodes = new Set(
    readFileSync("/proc/net/tcp", "utf8")
      .trim()
      .split("\n")
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      // Fields: sl, local address, remote address, state (01: established), ..., inode (the tenth).
      .filter((fields) => fields[1]?.endsWith(`:${hexPort}`) && fields[3] === "01")
      .map((fields) => `socket:[${fields[9]}]`),
  );
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) count++;
    } catch {}
  }
  return count;
}

/** A `fastpubsub server` of a fault test, whose processes (the server, and its workers) are watched for deaths the test did not cause. */
export interface FaultServer {
  url: string;
  /** The server process (a cluster's primary). */
  pid(): number;
  /** Its worker processes now (none when it serves alone). */
  workers(): number[];
  /** Kills one of its processes with `signal`, as the test's own doing. */
  kill(pid: number, signal: NodeJS.Signals): void;
  /** Kills the server with SIGKILL and, `downMs` later, starts it again with the same settings. */
  crashAndRestart(downMs: number): Promise<void>;
  /** Every death of one of its processes that the test did not cause, described. */
  unexpectedExits(): string[];
  /** What the server has logged, every process it ran included. */
  log(): string;
  /** Stops it with `signal` (SIGTERM by default) and returns its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `fastpubsub server` with `env`, which must fix FASTPUBSUB_API_PORT (a
 * restart serves where clients expect it, and serving is seen on /liveness
 * whatever the log level), and watches its processes every 100 ms until it is
 * stopped.
 */
export async function startFaultServer(env: Record<string, string>): Promise<FaultServer> {
  let server: ServerProcess = await startServerProcess(env);
  let earlierLogs = "";
  const killed = new Set<number>();
  const watched = new Set<number>();
  const exits: string[] = [];
  let stopping = false;
  const ended = new Set<number>();
  const watch = () => {
    const pid = server.child.pid as number;
    for (const process of [pid, ...childrenOf(pid)]) if (!ended.has(process)) watched.add(process);
    for (const process of watched) {
      if (isAlive(process)) continue;
      watched.delete(process);
      ended.add(process);
      if (killed.has(process) || stopping) continue;
      const exit = process === pid ? ` with ${server.child.exitCode ?? server.child.signalCode}` : "";
      exits.push(`${process === pid ? "server" : "worker"} ${process} exited${exit}`);
    }
  };
  watch();
  const timer = setInterval(watch, 100);
  return {
    url: server.url,
    pid: () => server.child.pid as number,
    workers: () => childrenOf(server.child.pid as number),
    kill(pid, signal) {
      killed.add(pid);
      process.kill(pid, signal);
    },
    async crashAndRestart(downMs) {
      killed.add(server.child.pid as number);
      for (const worker of childrenOf(server.child.pid as number)) killed.add(worker);
      await server.stop("SIGKILL");
      earlierLogs += server.log();
      await sleep(downMs);
      server = await startServerProcess(env);
      watch();
    },
    unexpectedExits: () => {
      watch();
      return [...exits];
    },
    log: () => earlierLogs + server.log(),
    async stop(signal = "SIGTERM") {
      watch();
      stopping = true;
      clearInterval(timer);
      return server.stop(signal);
    },
  };
}

/**
 * Runs a scenario's steps; when one fails, the error also names the server
 * processes that died unexpectedly (the likelier cause) and ends with the
 * last lines the servers logged.
 */
export async function diagnosed(servers: FaultServer[], steps: () => Promise<void>) {
  try {
    await steps();
  } catch (error) {
    const exits = servers.flatMap((server) => server.unexpectedExits());
    const logs = servers.map((server) => server.log().trim().split("\n").slice(-15).join("\n"));
    const message = `${(error as Error).message}\nunexpected exits: ${exits.join(", ") || "none"}\nlast server log lines:\n${logs.join("\n")}`;
    throw new Error(message, { cause: error });
  }
}
