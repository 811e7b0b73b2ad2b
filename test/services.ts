/**
 * Which real backing services this run can reach. Suites that need PostgreSQL or Redis use
 * `describe.runIf(services.postgres)`. In CI (CI=true) an unreachable service is a failure, raised
 * by test/global-setup.ts; on a laptop the global setup prints loudly which suites could not run.
 */
export const POSTGRES_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export const services = {
  postgres: process.env.IM_BRIDGE_TEST_POSTGRES === "1",
  redis: process.env.IM_BRIDGE_TEST_REDIS === "1",
};
