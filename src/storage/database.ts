/**
 * Opens the database named by DATABASE_URL (`sqlite:PATH` or `postgres://…`) and runs migrations.
 * SQLite is the embedded default: WAL so readers never block the callback's insert, and
 * synchronous=NORMAL, which in WAL mode is still durable across a process crash.
 *
 * Each driver is imported only for the database it opens: `pg` alone costs about 15 MB of resident
 * memory that a SQLite deployment never needs.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { type Compilable, Kysely, type LogEvent, PostgresDialect } from "kysely";
import { FairSqliteDialect } from "./fair-sqlite-dialect.ts";
import { SqliteGroupCommit } from "./group-commit.ts";
import { type Dialect, migrateToLatest } from "./migrations.ts";
import type { DatabaseSchema } from "./schema.ts";
import { type PreparingDatabase, withStatementCache } from "./statement-cache.ts";

export interface Database {
  readonly kysely: Kysely<DatabaseSchema>;
  readonly dialect: Dialect;
  /** SQLite only: the hot paths' writes, one transaction per turn of the event loop (group-commit.ts). */
  readonly groupCommit?: SqliteGroupCommit;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /**
   * Called with errors that belong to no query (an idle PostgreSQL client whose server went
   * away). Without a listener, pg's pool re-emits them as an 'error' event nobody handles, which
   * ends the process; with it the pool drops the client and the next query reconnects.
   */
  onBackgroundError?: (error: Error) => void;
  /**
   * Told the SQL text of every statement run, transaction control included (`begin`, `commit`):
   * how the tests count what one callback or one streamed segment costs the database.
   */
  onStatement?: (sql: string) => void;
}

export async function openDatabase(url: string, options: OpenDatabaseOptions = {}): Promise<Database> {
  const { onStatement } = options;
  // Kysely logs every query of a connection, `begin` and `commit` too; without a listener nothing is logged.
  const log = onStatement ? (event: LogEvent) => onStatement(event.query.sql) : undefined;
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length) || ":memory:";
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    const { default: BetterSqlite3 } = await import("better-sqlite3");
    const sqlite = new BetterSqlite3(path);
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("synchronous = NORMAL");
    sqlite.pragma("busy_timeout = 5000");
    sqlite.pragma("foreign_keys = ON");
    const cached = withStatementCache(sqlite as unknown as PreparingDatabase);
    const kysely = new Kysely<DatabaseSchema>({
      dialect: new FairSqliteDialect({ database: cached }),
      ...(log ? { log } : {}),
    });
    await migrateToLatest(kysely as Kysely<unknown>, "sqlite");
    const groupCommit = new SqliteGroupCommit(
      {
        prepare: (sql) => cached.prepare(sql),
        get inTransaction() {
          return sqlite.inTransaction;
        },
        // Through the statement cache: better-sqlite3's pragma() prepares anew on every call, and
        // this runs twice per group.
        setBusyTimeout: (milliseconds) => {
          cached.prepare(`pragma busy_timeout = ${Math.floor(milliseconds)}`).all([]);
        },
      },
      onStatement,
    );
    return {
      kysely,
      dialect: "sqlite",
      groupCommit,
      close: async () => {
        groupCommit.drain();
        await kysely.destroy();
      },
    };
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    const { default: pg } = await import("pg");
    // pg returns bigint (int8) and count() as strings; every bigint here is an epoch-ms timestamp or
    // a counter. (Process-wide in pg, so setting it again for a second database changes nothing.)
    pg.types.setTypeParser(20, (value) => Number(value));
    // A short connect timeout: while PostgreSQL is down a callback must get its 503 well inside
    // NIM's 5 s instead of waiting for a connection that will not come.
    const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 2_000 });
    pool.on("error", (error) => options.onBackgroundError?.(error));
    // A client that is checked out when the server ends its connection (a restart, an admin's
    // pg_terminate_backend) emits 'error' on itself, where the pool's idle listener is not attached:
    // without a listener of its own that error would end the process. Its query fails on its own.
    pool.on("connect", (client) => {
      client.on("error", (error) => options.onBackgroundError?.(error));
    });
    const kysely = new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }), ...(log ? { log } : {}) });
    await migrateToLatest(kysely as Kysely<unknown>, "postgres");
    return { kysely, dialect: "postgres", close: () => kysely.destroy() };
  }
  throw new Error("DATABASE_URL must be sqlite:PATH or postgres://…");
}

/**
 * Runs one write statement built with Kysely (an insert, an update) that needs no rows back, and
 * says how many rows it changed. On SQLite it joins the group commit of this event-loop turn (one
 * transaction for all of them) instead of committing on its own; the promise still settles only
 * once it is durable.
 */
export async function runWrite(
  database: Database,
  query: Compilable & { executeTakeFirst(): Promise<unknown> },
): Promise<number> {
  if (!database.groupCommit) return changedRows(await query.executeTakeFirst());
  const { sql, parameters } = query.compile();
  const { changes } = await database.groupCommit.submit((executor) => executor.run(sql, parameters), {
    singleStatement: true,
  });
  return changes;
}

/** Rows an insert, update or delete changed, from Kysely's result of either kind. */
function changedRows(result: unknown): number {
  const record = (result ?? {}) as {
    numInsertedOrUpdatedRows?: bigint;
    numUpdatedRows?: bigint;
    numDeletedRows?: bigint;
  };
  return Number(record.numInsertedOrUpdatedRows ?? record.numUpdatedRows ?? record.numDeletedRows ?? 0);
}

/** SQLite and PostgreSQL report a unique-key clash differently. */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "23505";
}
