import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "./wait.ts";

const root = join(import.meta.dirname, "../..");

/** The environment of a CLI run: PATH and HOME, then `env`; no FASTPUBSUB_* of the test runner leaks in. */
function cliEnv(env: Record<string, string>) {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env };
}

/** Runs the Node script `script` (a path from the project's root) with `args` to its end, and returns its exit code and output. */
export async function runScript(script: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [join(root, script), ...args], { cwd: root, env: cliEnv(env) });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const [code] = (await once(child, "close")) as [number | null];
  return { code, stdout, stderr };
}

/** Runs `fastpubsub <args>` to its end and returns its exit code and output. */
export function runCli(args: string[], env: Record<string, string> = {}) {
  return runScript("cli/run.ts", args, env);
}

/** Whether a process with this pid is running; one that has exited but is not yet reaped (a zombie) is not. */
export function isAlive(pid: number) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state follows the name, which is in parentheses.
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

/** A `fastpubsub server` process started by a test. */
export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** Everything it has logged so far. */
  log: () => string;
  /** Sends `signal` and resolves with the exit code once the process has exited and its output is read to the end. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `fastpubsub server` and waits until it serves: on a fixed
 * FASTPUBSUB_API_PORT, until /liveness answers; else, for the log line that
 * says where it serves. Fails if the server exits first.
 */
export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, [join(root, "cli/run.ts"), "server"], {
    cwd: root,
    env: cliEnv({ FASTPUBSUB_API_HOST: "127.0.0.1", FASTPUBSUB_API_PORT: "0", ...env }),
  });
  let output = "";
  // `close` comes after `exit`, once stdout and stderr are read to their end.
  const closed = once(child, "close") as Promise<[number | null]>;
  let exited = false;
  const exitError = (code: number | null) => new Error(`server exited with ${code} before serving:\n${output}`);
  const fixedPort = Number(env.FASTPUBSUB_API_PORT ?? 0);
  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      const onData = (chunk: string) => {
        output += chunk;
        const serving = /"message":"fastpubsub is serving","url":"([^"]+)"/.exec(output);
        if (serving?.[1] && !fixedPort) resolve(serving[1]);
      };
      child.stdout.setEncoding("utf8").on("data", onData);
      child.stderr.setEncoding("utf8").on("data", onData);
      child.once("exit", (code) => {
        exited = true;
        reject(exitError(code));
      });
      if (fixedPort) {
        const fixed = `http://127.0.0.1:${fixedPort}`;
        waitFor(
          async () => {
            if (exited) return false;
            const answered = await fetch(`${fixed}/liveness`).then(
              () => true,
              () => undefined,
            );
            return exited ? false : answered;
          },
          30_000,
          `${fixed}/liveness`,
        ).then((answered) => {
          if (answered) resolve(fixed);
        }, reject);
      }
    });
  } catch (error) {
    if (!exited) {
      child.kill("SIGKILL");
      await closed;
    }
    throw error;
  }
  return {
    child,
    url,
    log: () => output,
    async stop(signal = "SIGTERM") {
      child.kill(signal);
      const [code] = await closed;
      return code;
    },
  };
}
