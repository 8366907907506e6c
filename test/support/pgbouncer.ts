import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "./ports.ts";
import { waitFor } from "./wait.ts";

/** Debian's pgbouncer, as .ci/run installs it; /usr/sbin is not on every user's PATH. */
const executable = existsSync("/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : "pgbouncer";

/** The version of the installed pgbouncer, e.g. "1.18.0". */
export function pgbouncerVersion(): string {
  const output = execFileSync(executable, ["--version"], { encoding: "utf8" });
  return /PgBouncer (\d+\.\d+\.\d+)/.exec(output)?.[1] ?? "unknown";
}

/** A PgBouncer started by a test, in front of one PostgreSQL. */
export interface PgBouncer {
  port: number;
  /** The URL of `url`'s database, reached through PgBouncer. */
  urlOf(url: string): string;
  /** Runs a command of PgBouncer's admin console (e.g. `SHOW CLIENTS`) and returns its rows. */
  admin<T extends pg.QueryResultRow>(command: string): Promise<T[]>;
  /** Everything it has logged so far. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts Debian's pgbouncer on a free port of 127.0.0.1 in front of the
 * PostgreSQL of `url`, from a generated config in a temporary folder: every
 * database of that server, `settings` over pool_mode = transaction, and trust
 * authentication of `url`'s user (PgBouncer logs in to PostgreSQL with `url`'s
 * password, if it has one). PgBouncer refuses to run as root: then it runs as
 * nobody.
 */
export async function startPgBouncer(url: string, settings: Record<string, string | number> = {}): Promise<PgBouncer> {
  const target = new URL(url);
  const user = decodeURIComponent(target.username || "postgres");
  const password = decodeURIComponent(target.password);
  const dir = await mkdtemp(join(tmpdir(), "fastpubsub-pgbouncer-"));
  const port = await freePort();
  const quoted = (text: string) => `"${text.replaceAll('"', '""')}"`;
  const users = join(dir, "users.txt");
  await writeFile(users, `${quoted(user)} ""\n`);
  const server = [`host=${target.hostname || "127.0.0.1"}`, `port=${target.port || 5432}`];
  if (password) server.push(`user=${user}`, `password=${password}`);
  const config = {
    listen_addr: "127.0.0.1",
    listen_port: port,
    unix_socket_dir: "",
    auth_type: "trust",
    auth_file: users,
    admin_users: user,
    pool_mode: "transaction",
    max_client_conn: 500,
    ...settings,
  };
  const ini = join(dir, "pgbouncer.ini");
  await writeFile(
    ini,
    [
      "[databases]",
      `* = ${server.join(" ")}`,
      "[pgbouncer]",
      ...Object.entries(config).map(([name, value]) => `${name} = ${value}`),
      "",
    ].join("\n"),
  );
  // Readable by nobody, when PgBouncer drops root for that user.
  await chmod(dir, 0o755);
  const asRoot = process.getuid?.() === 0;
  const child: ChildProcess = spawn(executable, [...(asRoot ? ["-u", "nobody"] : []), ini], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const collect = (chunk: string) => {
    output += chunk;
  };
  child.stdout?.setEncoding("utf8").on("data", collect);
  child.stderr?.setEncoding("utf8").on("data", collect);
  const closed = once(child, "close");
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      await closed;
    }
    await rm(dir, { recursive: true, force: true });
  };
  const urlOf = (databaseUrl: string) => {
    const through = new URL(databaseUrl);
    through.hostname = "127.0.0.1";
    through.port = String(port);
    through.password = "";
    return through.toString();
  };
  const admin = async <T extends pg.QueryResultRow>(command: string) => {
    const adminUrl = new URL(urlOf(url));
    adminUrl.pathname = "/pgbouncer";
    const client = new pg.Client({ connectionString: adminUrl.toString() });
    await client.connect();
    try {
      // A query without values goes as a simple query, the only protocol the admin console speaks.
      return (await client.query<T>(command)).rows;
    } finally {
      await client.end();
    }
  };
  try {
    await waitFor(
      async () => {
        if (exited) throw new Error(`pgbouncer exited before it listened:\n${output}`);
        return output.includes(`listening on 127.0.0.1:${port}`) ? true : undefined;
      },
      10_000,
      "pgbouncer to listen",
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, urlOf, admin, log: () => output, stop };
}
