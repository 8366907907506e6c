import { defineConfig } from "vitest/config";

// FASTPUBSUB_TEST_REPORT names a JSON report to write beside the console output (.ci/run reads it).
const report = process.env.FASTPUBSUB_TEST_REPORT;

// `npm run test:faults`: each file starts, stops and crashes a PostgreSQL of its own, so the suite
// needs no database of the machine's. Files run one at a time, so that one's load does not stretch
// the timings another asserts.
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    fileParallelism: false,
    reporters: report ? ["default", ["json", { outputFile: report }]] : ["default"],
  },
});
