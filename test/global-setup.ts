/**
 * Runs once before the suites: probes PostgreSQL and Redis and tells the workers what is there
 * through environment variables. CI=true turns an unreachable service into a failed run.
 */
import { POSTGRES_URL, postgresAnswers, REDIS_URL, redisAnswers } from "./services.ts";

export default async function setup() {
  const [postgres, redis] = await Promise.all([postgresAnswers(POSTGRES_URL), redisAnswers(REDIS_URL)]);
  process.env.IM_BRIDGE_TEST_POSTGRES = postgres ? "1" : "0";
  process.env.IM_BRIDGE_TEST_REDIS = redis ? "1" : "0";
  const missing = [!postgres && `PostgreSQL (${POSTGRES_URL})`, !redis && `Redis (${REDIS_URL})`].filter(Boolean);
  if (missing.length === 0) return;
  if (process.env.CI === "true") {
    throw new Error(`CI=true but these services are unreachable: ${missing.join(", ")}`);
  }
  const line = "!".repeat(78);
  console.warn(
    `\n${line}\n  NOT RUN: suites that need ${missing.join(" and ")}.\n  Start them (see .ci/run) to run the whole suite.\n${line}\n`,
  );
}
