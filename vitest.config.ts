import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: one worker per core keeps the numerical tests from starving each other.
    maxWorkers: 2,
    // CI reads the JSON report to print its "N passed, N failed" line (.ci/run).
    reporters: process.env.CI ? ["default", ["json", { outputFile: ".ci/results.json" }]] : ["default"]
  }
})
