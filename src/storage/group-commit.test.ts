import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StatementLog } from "../testing/statement-log.ts";
import { type Database, openDatabase } from "./database.ts";
import { createRepositories, type Repositories } from "./repositories.ts";

describe("SQLite group commit", () => {
  let database: Database;
  let repositories: Repositories;
  const log = new StatementLog();

  beforeEach(async () => {
    database = await openDatabase("sqlite::memory:", { onStatement: log.record });
    repositories = createRepositories(database);
    log.clear();
  });

  afterEach(async () => {
    await database.close();
  });

  const message = (msgidServer: string) => ({
    msgidServer,
    fromAccid: "u_group",
    toAccid: "bot",
    text: "hi",
    msgTimestamp: 1,
    now: 7,
  });

  it("commits the callbacks of one event-loop turn in one transaction, each answered after it", async () => {
    const accepted = await Promise.all(
      ["g-1", "g-2", "g-3", "g-4", "g-5"].map((id) => repositories.inbox.accept(message(id))),
    );
    expect(accepted).toEqual([true, true, true, true, true]);
    expect(log.transactions).toBe(1);
    expect(log.commits).toBe(1);
    expect(log.data).toHaveLength(5);
    // One statement each: SQLite undoes a failed statement by itself, so no savepoints.
    expect(log.statements.filter((statement) => statement.startsWith("savepoint"))).toHaveLength(0);
  });

  it("rolls back only the item that failed: a repeated msgid is refused, the others are stored", async () => {
    expect(await repositories.inbox.accept(message("dup"))).toBe(true);
    log.clear();
    const outcomes = await Promise.all([
      repositories.inbox.accept(message("before")),
      repositories.inbox.accept(message("dup")),
      repositories.inbox.accept(message("after")),
    ]);
    expect(outcomes).toEqual([true, false, true]);
    expect(log.transactions).toBe(1);
    for (const id of ["before", "dup", "after"]) expect(await repositories.inbox.get(id)).toBeDefined();
    const audit = await repositories.audit.list({ event: "callback.accepted", subject: "dup" });
    expect(audit).toHaveLength(1);
  });

  it("commits what is pending when the database closes", async () => {
    const pending = repositories.inbox.accept(message("at-close"));
    await database.close();
    expect(await pending).toBe(true);
    database = await openDatabase("sqlite::memory:");
  });
});

describe("SQLite group commit beside another writer (the reply thread)", () => {
  it("waits for the other connection's write lock without blocking its event loop", async () => {
    const directory = mkdtempSync(join(tmpdir(), "im-bridge-group-"));
    const path = join(directory, "bridge.db");
    const database = await openDatabase(`sqlite:${path}`);
    const other = new BetterSqlite3(path);
    try {
      const repositories = createRepositories(database);
      other.prepare("begin immediate").run();
      const accepted = repositories.inbox.accept({
        msgidServer: "while-locked",
        fromAccid: "u_lock",
        toAccid: "bot",
        text: "hi",
        msgTimestamp: 1,
        now: 1,
      });
      // With SQLite's own busy handler the thread would sleep inside the flush until the lock
      // came free, and these turns of the event loop could not run (nor could the other writer,
      // in this test, ever commit).
      for (let turn = 0; turn < 5; turn += 1) await new Promise((resolve) => setTimeout(resolve, 2));
      other.prepare("commit").run();
      expect(await accepted).toBe(true);
      expect(await repositories.inbox.get("while-locked")).toBeDefined();
    } finally {
      other.close();
      await database.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
