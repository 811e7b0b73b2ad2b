import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts", "bench/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Tests that start servers on real ports and child processes are isolated per file.
    pool: "forks",
    globalSetup: ["test/global-setup.ts"],
  },
});
