import { createConnection } from "node:net";
import pg from "pg";
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

/** True when a Redis server answers PING at this URL (raw RESP, no client library needed). */
export function redisAnswers(url: string): Promise<boolean> {
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

export async function postgresAnswers(url: string): Promise<boolean> {
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
