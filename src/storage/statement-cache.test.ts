import BetterSqlite3 from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { withStatementCache } from "./statement-cache.ts";

describe("statement cache", () => {
  it("compiles each SQL text once and keeps at most `capacity` statements", () => {
    const sqlite = new BetterSqlite3(":memory:");
    let compiled = 0;
    const cache = withStatementCache(
      {
        prepare: (sql) => {
          compiled += 1;
          return sqlite.prepare(sql) as never;
        },
        close: () => sqlite.close(),
      },
      2,
    );
    cache.prepare("create table t (x integer)").run([]);
    for (let value = 0; value < 5; value += 1) cache.prepare("insert into t (x) values (?)").run([value]);
    expect(compiled).toBe(2);
    expect(cache.prepare("select count(*) as n from t").all([])).toEqual([{ n: 5 }]);
    expect(cache.cached).toBe(2);
    // The least recently used (the create) was evicted; the insert is still cached.
    cache.prepare("insert into t (x) values (?)").run([9]);
    expect(compiled).toBe(3);
    cache.close();
  });
});
