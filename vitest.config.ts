import { defineConfig } from "vitest/config";

// FASTPUBSUB_TEST_REPORT names a JSON report to write beside the console output (.ci/run reads it).
const report = process.env.FASTPUBSUB_TEST_REPORT;

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: report ? ["default", ["json", { outputFile: report }]] : ["default"],
  },
});
