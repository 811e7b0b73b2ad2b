/**
 * The storage suite, run against the embedded SQLite and, when reachable, the machine's
 * PostgreSQL: one schema and one set of queries must behave the same on both.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POSTGRES_URL, services } from "../../test/services.ts";
import { type Database, openDatabase } from "./database.ts";
import { createRepositories, type Repositories } from "./repositories.ts";

async function freshPostgresSchema(): Promise<string> {
  // Each run gets its own schema so parallel files and earlier runs never interfere.
  const schema = `t_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`create schema ${schema}`);
  await client.end();
  const url = new URL(POSTGRES_URL);
  url.searchParams.set("options", `-c search_path=${schema}`);
  return url.toString();
}

const backends: Array<{ name: string; enabled: boolean; url: () => Promise<string> }> = [
  { name: "sqlite", enabled: true, url: async () => "sqlite::memory:" },
  { name: "postgres", enabled: services.postgres, url: freshPostgresSchema },
];

for (const backend of backends) {
  describe.runIf(backend.enabled)(`storage on ${backend.name}`, () => {
    let database: Database;
    let repositories: Repositories;
    beforeAll(async () => {
      database = await openDatabase(await backend.url());
      repositories = createRepositories(database);
    });
    afterAll(async () => {
      await database?.close();
    });

    it("accepts an inbox message once and recognises a redelivery", async () => {
      const message = {
        msgidServer: "9007199254740993123",
        fromAccid: "u_a",
        toAccid: "bot",
        text: "你好",
        msgTimestamp: 1,
        now: 10,
      };
      expect(await repositories.inbox.accept(message)).toBe(true);
      expect(await repositories.inbox.accept(message)).toBe(false);
      const stored = await repositories.inbox.get("9007199254740993123");
      expect(stored).toMatchObject({ status: "accepted", text: "你好", msg_timestamp: 1, received_at: 10 });
      const audit = await repositories.audit.list({ event: "callback.accepted", subject: "9007199254740993123" });
      expect(audit).toHaveLength(1);
    });

    it("lets one worker at a time hold a message and hands it over when the lease runs out", async () => {
      await repositories.inbox.accept({
        msgidServer: "lease-1",
        fromAccid: "u_a",
        toAccid: "bot",
        text: "x",
        msgTimestamp: 1,
        now: 0,
      });
      expect(await repositories.inbox.claim("lease-1", "worker-a", 100, 1100)).toBe(true);
      expect(await repositories.inbox.claim("lease-1", "worker-b", 200, 1200)).toBe(false);
      expect(await repositories.inbox.claim("lease-1", "worker-b", 1101, 2101)).toBe(true);
      expect(await repositories.inbox.renewLease("lease-1", "worker-a", 5000)).toBe(false);
      await repositories.inbox.finish("lease-1", "done", 3000);
      expect(await repositories.inbox.claim("lease-1", "worker-c", 9000, 9100)).toBe(false);
      expect((await repositories.inbox.unfinished()).map((row) => row.msgid_server)).not.toContain("lease-1");
    });

    it("commits outbox messages only at the reply's next seq", async () => {
      const reply = await repositories.replies.getOrCreate("reply-1", "stream-1", "u_a", 0);
      expect(reply.next_seq).toBe(0);
      const again = await repositories.replies.getOrCreate("reply-1", "stream-other", "u_a", 0);
      expect(again.stream_id).toBe("stream-1");
      const target = { replyTo: "reply-1", streamId: "stream-1" };
      expect(
        await repositories.replies.commitOutbox(target, [{ seq: 0, body: "{}", kind: "segment", appendText: "你" }], 1),
      ).toBe(true);
      expect(
        await repositories.replies.commitOutbox(target, [{ seq: 0, body: "{}", kind: "segment", appendText: "X" }], 2),
      ).toBe(false);
      expect(
        await repositories.replies.commitOutbox(
          target,
          [
            { seq: 1, body: "{}", kind: "final", appendText: "好" },
            { seq: 2, body: "{}", kind: "final", appendText: "" },
          ],
          3,
          "ok",
        ),
      ).toBe(true);
      const stored = await repositories.replies.get("reply-1");
      expect(stored).toMatchObject({ text: "你好", next_seq: 3, state: "finished", final_status: "ok" });
      await repositories.replies.markSent("stream-1", 0, "123", 4);
      const outbox = await repositories.replies.outbox("stream-1");
      expect(outbox.map((row) => [row.seq, row.state])).toEqual([
        [0, "sent"],
        [1, "pending"],
        [2, "pending"],
      ]);
    });

    it("keeps conversation history within the turn and character budget and resets it", async () => {
      const conversations = repositories.conversations;
      for (let index = 0; index < 6; index += 1) {
        await conversations.append(
          { userAccid: "u_h", role: index % 2 ? "assistant" : "user", content: `m${index}`, replyTo: `r${index}` },
          index,
        );
      }
      await conversations.append({ userAccid: "u_other", role: "user", content: "other", replyTo: "o1" }, 7);
      expect(await conversations.recent("u_h", 4, 1000)).toEqual([
        { role: "user", content: "m2" },
        { role: "assistant", content: "m3" },
        { role: "user", content: "m4" },
        { role: "assistant", content: "m5" },
      ]);
      expect(await conversations.recent("u_h", 10, 4)).toEqual([
        { role: "user", content: "m4" },
        { role: "assistant", content: "m5" },
      ]);
      expect(await conversations.recent("u_h", 10, 1000, "r5")).toHaveLength(5);
      expect(await conversations.has("u_h", "r1", "assistant")).toBe(true);
      await conversations.reset("u_h", 8);
      expect(await conversations.recent("u_h", 10, 1000)).toEqual([]);
      await conversations.append({ userAccid: "u_h", role: "user", content: "after", replyTo: "r9" }, 9);
      expect(await conversations.recent("u_h", 10, 1000)).toEqual([{ role: "user", content: "after" }]);
      expect(await conversations.recent("u_other", 10, 1000)).toEqual([{ role: "user", content: "other" }]);
    });

    it("upserts accounts by site user and keeps accids unique", async () => {
      await repositories.accounts.upsert({ siteUserId: "alice", accid: "u_alice", token: "t1", name: null }, 1);
      await repositories.accounts.upsert({ siteUserId: "alice", accid: "u_alice", token: "t2", name: "A" }, 2);
      expect(await repositories.accounts.findBySiteUser("alice")).toMatchObject({
        token: "t2",
        name: "A",
        created_at: 1,
        updated_at: 2,
      });
      await expect(
        repositories.accounts.upsert({ siteUserId: "mallory", accid: "u_alice", token: "t3", name: null }, 3),
      ).rejects.toThrow();
      expect(await repositories.accounts.count()).toBe(1);
    });

    it("survives running the migrations twice", async () => {
      const { migrateToLatest } = await import("./migrations.ts");
      await migrateToLatest(database.kysely as never, database.dialect);
      expect(await repositories.accounts.count()).toBeGreaterThanOrEqual(0);
    });
  });
}
