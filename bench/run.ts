/**
 * The fastpubsub benchmark: `npm run bench -- [options]`. Runs each scenario
 * against the raw-SQL baseline and against a fastpubsub server over REST and
 * gRPC (from this process, or from the Go load generator in bench/go), in the
 * same run on the same database, and prints msg/s with the ratio to the
 * baseline (median of --runs runs).
 */
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { createBaselineDriver } from "./baseline.ts";
import { cpuTimes } from "./cpu.ts";
import type { Driver } from "./driver.ts";
import { buildGoLoadGenerator, goRuns, runGoLoadGenerator } from "./go-load-generator.ts";
import { createGrpcDriver } from "./grpc.ts";
import { createRestDriver } from "./rest.ts";
import { dedupPipeline, fanOut, latency, orderedPipeline, pipeline, type Timing } from "./scenarios.ts";
import { ensureDatabase, startChild, startServer, stop } from "./server.ts";

const { values: options } = parseArgs({
  options: {
    scenario: { type: "string", default: "all" },
    targets: { type: "string", default: "baseline,rest,grpc" },
    url: { type: "string" },
    "database-url": {
      type: "string",
      default: process.env.FASTPUBSUB_BENCH_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/fastpubsub_bench",
    },
    duration: { type: "string", default: "20" },
    warmup: { type: "string", default: "5" },
    runs: { type: "string", default: "3" },
    "latency-messages": { type: "string", default: "2000" },
    help: { type: "boolean", default: false },
  },
});

if (options.help) {
  process.stdout.write(`npm run bench -- [options]

  --scenario A|A-unthrottled|A-ordered|A-dedup|B|C|all
                                       what to run (default all); A-ordered is A on a subscription ordered
                                       by a payload key with 1,000 values, A-dedup A on a topic de-duplicated
                                       by a payload key with 10 % duplicates; both run against fastpubsub
                                       only, and compare with A of the same target when it ran before them
  --targets baseline,rest,grpc         what to run it against (default all three); consumers that wait:
                                       "rest-long-poll" (wait_seconds=5) and "grpc-stream" (StreamMessages,
                                       max_outstanding_messages=1000); "bare" adds a reference
                                       point: the same SQL functions behind a bare node:http server
                                       (bench/bare-server.ts), to tell the HTTP hop's cost from the server's;
                                       "bare-grpc" the same behind connect-node on node:http2 with the twins and
                                       the Struct codec and nothing else (bench/bare-grpc-server.ts), for gRPC;
                                       "grpc-go": gRPC from the Go load generator (bench/go, the generated Go
                                       client as examples/go calls it; A, A-unthrottled and B), built here
                                       with \`go\` (skipped when it is not installed)
  --url URL                            a running fastpubsub server; by default one is started on --database-url
  --database-url URL                   the database of the baseline and of the started server
                                       (default $FASTPUBSUB_BENCH_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/fastpubsub_bench)
  --duration S --warmup S              measured seconds after warm-up seconds (default 20 after 5)
  --runs N                             runs per scenario and target; the median is reported (default 3)
  --latency-messages N                 messages timed in scenario C (default 2000)

Under each result of A and B: the CPU time spent per message by the load generator (this process, or
the Go program for grpc-go), the server (when started here), PostgreSQL and the whole machine, read
from /proc over the measured window.
`);
  process.exit(0);
}

const databaseUrl = options["database-url"];
const warmupMs = Number(options.warmup) * 1000;
const durationMs = Number(options.duration) * 1000;
const runs = Number(options.runs);
let targets = options.targets.split(",");
const scenarios = options.scenario === "all" ? ["A", "A-unthrottled", "A-ordered", "A-dedup", "B", "C"] : options.scenario.split(",");

await ensureDatabase(databaseUrl);
const goLoadGenerator = targets.includes("grpc-go") ? await buildGoLoadGenerator() : undefined;
if (targets.includes("grpc-go") && !goLoadGenerator) {
  console.log("grpc-go skipped: `go` is not installed (Debian: golang-go and the Go packages listed in .ci/run)");
  targets = targets.filter((target) => target !== "grpc-go");
}

/** What a target runs against: a process of its own, or (the baseline) nothing but PostgreSQL. */
interface System {
  url: string;
  child?: ChildProcess;
}

// Each target's system runs only during that target's runs, so that no other server shares the
// machine, or the tables (the fastpubsub server's maintenance vacuums them), with the one measured.
const fastpubsub = async (): Promise<System> => (options.url ? { url: options.url } : startServer(databaseUrl));
const systems: Record<string, () => Promise<System | undefined>> = {
  baseline: async () => undefined,
  bare: () => startChild(process.execPath, [join(import.meta.dirname, "bare-server.ts"), databaseUrl], /^(http:\S+)/),
  "bare-grpc": () => startChild(process.execPath, [join(import.meta.dirname, "bare-grpc-server.ts"), databaseUrl], /^(http:\S+)/),
  rest: fastpubsub,
  grpc: fastpubsub,
  "rest-long-poll": fastpubsub,
  "grpc-stream": fastpubsub,
  "grpc-go": fastpubsub,
};

const drivers: Record<string, (url: string) => Driver> = {
  baseline: () => createBaselineDriver(databaseUrl),
  bare: (url) => ({ ...createRestDriver(url), name: "bare node:http server" }),
  "bare-grpc": (url) => ({ ...createGrpcDriver(url), name: "bare connect-node gRPC server" }),
  rest: (url) => createRestDriver(url),
  grpc: (url) => createGrpcDriver(url),
  "rest-long-poll": (url) => createRestDriver(url, { waitSeconds: 5 }),
  "grpc-stream": (url) => createGrpcDriver(url, { stream: true }),
};

type ScenarioRun = (driver: Driver, timing: Timing) => Promise<Record<string, number>>;
// `features`: the scenario uses fastpubsub's own features, which neither the baseline nor the bare server has.
const scenarioRuns: Record<string, { metric: string; run: ScenarioRun; features?: boolean }> = {
  A: { metric: "delivered+acked msg/s", run: (driver, timing) => pipeline(driver, timing, 2000) },
  "A-ordered": { metric: "delivered+acked msg/s", run: orderedPipeline, features: true },
  "A-dedup": { metric: "delivered+acked msg/s", run: dedupPipeline, features: true },
  "A-unthrottled": {
    metric: "delivered+acked msg/s",
    run: (driver, timing) => pipeline(driver, timing, Number.POSITIVE_INFINITY),
  },
  B: { metric: "published msg/s", run: (driver, timing) => fanOut(driver, timing) },
  C: { metric: "p50 ms", run: (driver) => latency(driver, Number(options["latency-messages"])) },
};

const where = options.url ? `fastpubsub at ${options.url}` : "a fastpubsub server started for each target";
console.log(`fastpubsub benchmark: database ${new URL(databaseUrl).pathname.slice(1)}, ${where}, ${runs} run(s) each`);
// Scenario A's figure per target, that the feature scenarios are compared with.
const plainA = new Map<string, number>();
for (const name of scenarios) {
  const scenario = scenarioRuns[name];
  if (!scenario) throw new Error(`unknown scenario ${name}`);
  console.log(`\nscenario ${name}${name === "C" ? "" : `: ${options.duration} s after a ${options.warmup} s warm-up`}`);
  let baseline: number | undefined;
  for (const target of targets) {
    const create = drivers[target];
    const start = systems[target];
    if ((!create && target !== "grpc-go") || !start) throw new Error(`unknown target ${target}`);
    if (scenario.features && ["baseline", "bare", "grpc-go"].includes(target)) {
      console.log(`  ${target.padEnd(9)} skipped: ${name} uses fastpubsub's ordering or de-duplication`);
      continue;
    }
    if (target === "grpc-go" && !goRuns(name)) {
      console.log(`  ${target.padEnd(9)} skipped: the Go load generator runs A, A-unthrottled and B`);
      continue;
    }
    const system = await start();
    // With --url the server is not ours to watch: its CPU counts as the machine's.
    const timing: Timing = {
      warmupMs,
      durationMs,
      cpu: (loadGeneratorPid) => cpuTimes(system?.child?.pid, loadGeneratorPid),
    };
    const rss = system?.child && !target.startsWith("bare") ? watchRss(system.child) : undefined;
    const results: Record<string, number>[] = [];
    try {
      for (let n = 0; n < runs; n++) {
        await vacuum(databaseUrl);
        // grpc-go has no driver in this process: the Go program is the load generator.
        if (!create) {
          results.push(await runGoLoadGenerator(goLoadGenerator ?? "", system?.url ?? "", name, timing));
          continue;
        }
        const driver = create(system?.url ?? "");
        try {
          results.push(await scenario.run(driver, timing));
        } finally {
          await driver.close();
        }
      }
    } finally {
      rss?.stop();
      await stop(system?.child);
    }
    const median = medianOf(results, scenario.metric);
    const value = median[scenario.metric] ?? 0;
    if (target === "baseline") baseline = value;
    if (name === "A") plainA.set(target, value);
    const againstA = plainA.get(target);
    const ratio = scenario.features
      ? againstA
        ? `  ${(value / againstA).toFixed(2)}× A`
        : ""
      : baseline && target !== "baseline"
        ? `  ${(value / baseline).toFixed(2)}× baseline`
        : "";
    const figures = Object.entries(median);
    const details = figures
      .filter(([key]) => !key.startsWith("cpu "))
      .map(([key, figure]) => `${key} ${format(figure)}`)
      .join(", ");
    const memory = rss ? `, server RSS max ${rss.maxMb()} MB` : "";
    const spread = runs > 1 ? ` (runs: ${results.map((result) => format(result[scenario.metric] ?? 0)).join(" / ")})` : "";
    console.log(`  ${target.padEnd(9)} ${details}${ratio}${memory}${spread}`);
    const cpu = figures.filter(([key]) => key.startsWith("cpu ") && key !== "cpu machine");
    if (cpu.length > 0) {
      const parties = cpu.map(([key, us]) => `${key.slice(4)} ${us.toFixed(1)}`).join(", ");
      console.log(`  ${"".padEnd(9)} CPU µs per message: ${parties}; whole machine ${median["cpu machine"]?.toFixed(1)}`);
    }
  }
}

/** The run whose headline figure is the median, so that all of a line's figures come from one run. */
function medianOf(results: Record<string, number>[], metric: string) {
  const sorted = [...results].sort((a, b) => (a[metric] ?? 0) - (b[metric] ?? 0));
  return sorted[Math.floor(sorted.length / 2)] ?? {};
}

function format(figure: number) {
  return figure >= 100 ? Math.round(figure).toLocaleString("en-US") : figure.toFixed(2);
}

/**
 * Compacts the tables of both systems, so that each run starts as the
 * baseline's does (on a new table), without the dead rows of the run before.
 */
async function vacuum(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const { rows } = await client.query<{ relname: string }>(
    "SELECT relname FROM pg_stat_user_tables WHERE relname IN ('messages', 'queue_counts', 'acked_counts', 'dead_letters', 'bench_messages')",
  );
  for (const { relname } of rows) await client.query(`VACUUM (FULL, ANALYZE) ${client.escapeIdentifier(relname)}`);
  // And from the same point of the WAL: right after a checkpoint, as writes after one cost more (full-page images).
  await client.query("CHECKPOINT");
  await client.end();
}

/** Samples the server's resident memory every 200 ms. */
function watchRss(child: ChildProcess) {
  let max = 0;
  const timer = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      max = Math.max(max, kb);
    } catch {}
  }, 200);
  return {
    maxMb: () => Math.round(max / 1024),
    stop: () => clearInterval(timer),
  };
}
