import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";

const root = join(import.meta.dirname, "../..");

/** The environment of a CLI run: PATH and HOME, then `env`; no FASTPUBSUB_* of the test runner leaks in. */
function cliEnv(env: Record<string, string>) {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env };
}

/** Runs `fastpubsub <args>` to its end and returns its exit code and output. */
export async function runCli(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [join(root, "cli/run.ts"), ...args], { cwd: root, env: cliEnv(env) });
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

/** A `fastpubsub server` process started by a test. */
export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** Everything it has logged so far. */
  log: () => string;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `fastpubsub server` and waits until it serves: on a fixed
 * FASTPUBSUB_API_PORT, until /liveness answers; else, for the log line that
 * says where it serves.
 */
export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, [join(root, "cli/run.ts"), "server"], {
    cwd: root,
    env: cliEnv({ FASTPUBSUB_API_HOST: "127.0.0.1", FASTPUBSUB_API_PORT: "0", ...env }),
  });
  let output = "";
  const exited = once(child, "exit") as Promise<[number | null]>;
  const fixedPort = Number(env.FASTPUBSUB_API_PORT ?? 0);
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: string) => {
      output += chunk;
      const serving = /"message":"fastpubsub is serving","url":"([^"]+)"/.exec(output);
      if (serving?.[1] && !fixedPort) resolve(serving[1]);
    };
    child.stdout.setEncoding("utf8").on("data", onData);
    child.stderr.setEncoding("utf8").on("data", onData);
    child.once("exit", (code) => reject(new Error(`server exited with ${code} before serving:\n${output}`)));
    if (fixedPort) {
      const fixed = `http://127.0.0.1:${fixedPort}`;
      const poll = () =>
        fetch(`${fixed}/liveness`).then(
          () => resolve(fixed),
          () => setTimeout(poll, 50),
        );
      poll();
    }
  });
  return {
    child,
    url,
    log: () => output,
    async stop(signal = "SIGTERM") {
      child.kill(signal);
      const [code] = await exited;
      return code;
    },
  };
}
