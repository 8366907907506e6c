import { defineConfig } from "vitest/config";

// FASTPUBSUB_TEST_REPORT names a JSON report to write beside the console output (.ci/run reads it).
const report = process.env.FASTPUBSUB_TEST_REPORT;
// `npm test` needs only Node and PostgreSQL; `npm run test:system` runs the tests that need
// tools from Debian (Chromium for the API docs pages, Go for the Go example, an OAuth2 client and a grpc-go client,
// promtool for /metrics, PgBouncer for servers behind it), as .ci/run does.
// `npm run test:faults` runs test/faults with vitest.faults.config.ts.
const system = process.env.FASTPUBSUB_SYSTEM_TESTS === "1";

export default defineConfig({
  test: {
    include: system ? ["test/system/**/*.test.ts"] : ["test/**/*.test.ts"],
    exclude: system ? [] : ["test/system/**", "test/faults/**"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: report ? ["default", ["json", { outputFile: report }]] : ["default"],
  },
});
