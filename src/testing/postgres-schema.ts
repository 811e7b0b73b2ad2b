/**
 * A PostgreSQL URL whose connections work in a fresh schema of their own (`search_path`), so
 * parallel test files and earlier runs never see each other's rows.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";

export async function freshPostgresSchema(postgresUrl: string): Promise<string> {
  const schema = `t_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const client = new pg.Client({ connectionString: postgresUrl });
  await client.connect();
  await client.query(`create schema ${schema}`);
  await client.end();
  const url = new URL(postgresUrl);
  url.searchParams.set("options", `-c search_path=${schema}`);
  return url.toString();
}
