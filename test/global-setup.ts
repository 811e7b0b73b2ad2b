/**
 * Runs once before the suites: probes PostgreSQL and Redis and tells the workers what is there
 * through environment variables. CI=true turns an unreachable service into a failed run.
 */
import { createConnection } from "node:net";
import pg from "pg";
import { POSTGRES_URL, REDIS_URL } from "./services.ts";

function redisAnswers(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port || 6379) });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, 1500);
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(data.toString().startsWith("+PONG"));
    });
    socket.once("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1500 });
  try {
    await client.connect();
    await client.query("select 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

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
