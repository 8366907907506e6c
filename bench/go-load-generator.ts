import { execFile, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { type CpuTimes, cpuPerMessage } from "./cpu.ts";
import type { Timing } from "./scenarios.ts";

const root = join(import.meta.dirname, "..");

/** The counts the Go load generator reports. */
type Count = "published" | "acked" | "routed";

/** The scenarios the Go load generator runs: which of its counts make each figure, and which one the CPU is divided by. */
const goScenarios: Record<string, { rates: Record<string, Count>; perMessage: Count }> = {
  A: { rates: { "delivered+acked msg/s": "acked", "published msg/s": "published" }, perMessage: "acked" },
  "A-unthrottled": { rates: { "delivered+acked msg/s": "acked", "published msg/s": "published" }, perMessage: "acked" },
  B: { rates: { "published msg/s": "published", "routed rows/s": "routed" }, perMessage: "published" },
};

/** A line of the Go load generator's output: its counts at the start or the end of the measured window. */
interface Report extends Record<Count, number> {
  window: "start" | "end";
  seconds: number;
}

/** Tells whether the Go load generator runs the scenario. */
export function goRuns(scenario: string) {
  return scenario in goScenarios;
}

/**
 * Builds the Go load generator (bench/go) as the Go examples build, offline in
 * GOPATH mode against Debian's Go packages, into a temporary directory removed
 * when this process exits; returns the binary, or undefined when `go` is not installed.
 */
export async function buildGoLoadGenerator(): Promise<string | undefined> {
  const directory = await mkdtemp(join(tmpdir(), "fastpubsub-bench-go-"));
  process.on("exit", () => rmSync(directory, { recursive: true, force: true }));
  const gopath = join(directory, "gopath");
  await mkdir(join(gopath, "src"), { recursive: true });
  await symlink(root, join(gopath, "src/fastpubsub"));
  const binary = join(directory, "load-generator");
  try {
    await promisify(execFile)("go", ["build", "-o", binary, "fastpubsub/bench/go"], {
      cwd: join(gopath, "src/fastpubsub"),
      env: { ...process.env, GO111MODULE: "off", GOPROXY: "off", GOPATH: `${gopath}:/usr/share/gocode` },
    });
  } catch (error) {
    const { code, stderr } = error as { code?: string; stderr?: string };
    if (code === "ENOENT") return undefined;
    throw new Error(`go build of bench/go failed (install golang-go and the packages in .ci/run): ${stderr ?? String(error)}`);
  } finally {
    await rm(gopath, { recursive: true, force: true });
  }
  return binary;
}

/**
 * Runs a scenario with the Go load generator against the server at `url` and
 * returns the same figures as bench/scenarios.ts: the rates over the window
 * it reports, and the CPU each party spent per message over that window, the
 * load generator being the Go program.
 */
export async function runGoLoadGenerator(binary: string, url: string, scenario: string, timing: Timing) {
  const figures = goScenarios[scenario];
  if (!figures) throw new Error(`the Go load generator does not run scenario ${scenario}`);
  const child = spawn(
    binary,
    ["-address", url, "-scenario", scenario, "-warmup", String(timing.warmupMs / 1000), "-duration", String(timing.durationMs / 1000)],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const reports: { report: Report; cpu: CpuTimes }[] = [];
  // The CPU times are read as each report arrives, so that they cover the window of the counts.
  createInterface({ input: child.stdout }).on("line", (line) => {
    const cpu = timing.cpu(child.pid);
    reports.push({ report: JSON.parse(line) as Report, cpu });
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  const start = reports.find(({ report }) => report.window === "start");
  const end = reports.find(({ report }) => report.window === "end");
  if (code !== 0 || !start || !end) throw new Error(`the Go load generator exited with ${code}: ${stderr}`);
  const seconds = end.report.seconds - start.report.seconds;
  const rates = Object.entries(figures.rates).map(([name, count]) => [name, (end.report[count] - start.report[count]) / seconds]);
  const messages = end.report[figures.perMessage] - start.report[figures.perMessage];
  const cpu = Object.entries(cpuPerMessage(start.cpu, end.cpu, messages)).map(([party, us]) => [`cpu ${party}`, us]);
  return Object.fromEntries([...rates, ...cpu]) as Record<string, number>;
}
