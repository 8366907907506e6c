import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import pg from "pg";

/** Stops a system's process and waits until it has exited. */
export async function stop(child: ChildProcess | undefined) {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** Creates the database of `url` unless it exists. */
export async function ensureDatabase(url: string) {
  const target = new URL(url);
  const name = target.pathname.slice(1);
  target.pathname = "/postgres";
  const client = new pg.Client({ connectionString: target.toString() });
  await client.connect();
  const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
  if (rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  await client.end();
}

/** Starts `fastpubsub server` on the database, on a free port, and waits until it serves. */
export function startServer(url: string) {
  // Through the bin, so that the server runs with the flags of its #! line, as `npm start` does.
  return startChild(join(import.meta.dirname, "../cli/run.ts"), ["server"], /"url":"([^"]+)"/, {
    FASTPUBSUB_DATABASE_URL: url,
    FASTPUBSUB_API_HOST: "127.0.0.1",
    FASTPUBSUB_API_PORT: "0",
  });
}

/** Starts a program and waits until its output shows the URL it serves on. */
export async function startChild(command: string, args: string[], urlPattern: RegExp, env: Record<string, string> = {}) {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: string) => {
      output += chunk;
      const match = urlPattern.exec(output);
      if (match?.[1]) {
        // From here on its output is only drained, not read.
        for (const stream of [child.stdout, child.stderr]) stream?.off("data", onData).resume();
        resolve(match[1]);
      }
    };
    for (const stream of [child.stdout, child.stderr]) stream?.setEncoding("utf8").on("data", onData);
    child.once("exit", (code) => reject(new Error(`${command} exited with ${code}: ${output}`)));
  });
  return { url, child };
}
