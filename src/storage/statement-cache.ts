/**
 * better-sqlite3 compiles SQL on every `prepare`, and Kysely's SQLite driver prepares each query
 * anew. The queries of this service are a few dozen fixed SQL texts (parameters are bound, never
 * inlined), so keeping their compiled statements saves the parse and plan on every call — about a
 * quarter of the CPU of a streamed segment in the profile (BENCHMARKS.md). Bounded, least recently
 * used first out, so a stray dynamic query cannot grow it without limit.
 *
 * A statement is reused only after the previous use finished: Kysely runs `all`/`run` synchronously,
 * and its `iterate` (streaming) is not used by this service.
 *
 * @module
 */
import type { SqliteDatabase, SqliteStatement } from "kysely";

export interface PreparingDatabase {
  prepare(sql: string): SqliteStatement;
  close(): void;
}

export function withStatementCache(
  database: PreparingDatabase,
  capacity = 256,
): SqliteDatabase & { readonly cached: number } {
  const statements = new Map<string, SqliteStatement>();
  return {
    get cached() {
      return statements.size;
    },
    prepare(sql: string): SqliteStatement {
      const known = statements.get(sql);
      if (known) {
        // Re-insert to mark it most recently used.
        statements.delete(sql);
        statements.set(sql, known);
        return known;
      }
      const statement = database.prepare(sql);
      statements.set(sql, statement);
      if (statements.size > capacity) {
        const oldest = statements.keys().next().value;
        if (oldest !== undefined) statements.delete(oldest);
      }
      return statement;
    },
    close() {
      statements.clear();
      database.close();
    },
  };
}
