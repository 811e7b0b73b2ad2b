/**
 * The storage suite, run against the embedded SQLite and, when reachable, the machine's
 * PostgreSQL: one schema and one set of queries must behave the same on both.
 */
import { sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POSTGRES_URL, services } from "../../test/services.ts";
import { freshPostgresSchema as freshSchema } from "../testing/postgres-schema.ts";
import { StatementLog } from "../testing/statement-log.ts";
import { type Database, openDatabase } from "./database.ts";
import { createRepositories, type Repositories } from "./repositories.ts";

async function freshPostgresSchema(): Promise<string> {
  return freshSchema(POSTGRES_URL);
}

const backends: Array<{ name: string; enabled: boolean; url: () => Promise<string> }> = [
  { name: "sqlite", enabled: true, url: async () => "sqlite::memory:" },
  { name: "postgres", enabled: services.postgres, url: freshPostgresSchema },
];

describe.runIf(services.postgres)("PostgreSQL connections the server ends", () => {
  it("do not end the process, also when checked out, and the next query reconnects", async () => {
    const errors: Error[] = [];
    const database = await openDatabase(await freshPostgresSchema(), {
      onBackgroundError: (error) => errors.push(error),
    });
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    try {
      await database.kysely.connection().execute(async (connection) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(connection);
        // What a server restart does to a connection in use (error 57P01 on that client).
        await admin.query("select pg_terminate_backend($1)", [rows[0]?.pid]);
        const deadline = Date.now() + 5_000;
        while (errors.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      });
      expect(errors.length).toBeGreaterThan(0);
      const { rows } = await sql<{ one: number }>`select 1 as one`.execute(database.kysely);
      expect(rows[0]?.one).toBe(1);
    } finally {
      await admin.end();
      await database.close();
    }
  });
});

for (const backend of backends) {
  describe.runIf(backend.enabled)(`storage on ${backend.name}`, () => {
    let database: Database;
    let repositories: Repositories;
    const log = new StatementLog();
    beforeAll(async () => {
      database = await openDatabase(await backend.url(), { onStatement: log.record });
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

    it("accepts a callback in one statement that also writes its callback.accepted audit row", async () => {
      const message = {
        msgidServer: "one-statement",
        fromAccid: "u_one",
        toAccid: "bot",
        text: "hi",
        msgTimestamp: 1,
        now: 42,
        conversationId: "team:bot:6001:u_one",
      };
      log.clear();
      expect(await repositories.inbox.accept(message)).toBe(true);
      expect(log.data).toHaveLength(1);
      expect(log.commits).toBe(1);
      log.clear();
      expect(await repositories.inbox.accept({ ...message, now: 43 })).toBe(false);
      expect(log.data).toHaveLength(1);
      const audit = await repositories.audit.list({ event: "callback.accepted", subject: "one-statement" });
      expect(audit.map((row) => [row.at, row.detail])).toEqual([
        [42, JSON.stringify({ from: "u_one", conversation: "team:bot:6001:u_one" })],
      ]);
    });

    it("lets one worker at a time hold a message, by the database's clock", async () => {
      await repositories.inbox.accept({
        msgidServer: "lease-1",
        fromAccid: "u_lease",
        toAccid: "bot",
        text: "x",
        msgTimestamp: 1,
        now: 0,
      });
      const claimed = await repositories.inbox.claim("lease-1", "worker-a", 60_000);
      expect(claimed).toMatchObject({ status: "processing", lease_owner: "worker-a", attempts: 1 });
      // lease_until is the database's now + the lease, whatever this host's clock says.
      expect(Math.abs((claimed?.lease_until ?? 0) - 60_000 - Date.now())).toBeLessThan(60_000);
      expect(await repositories.inbox.claim("lease-1", "worker-b", 60_000)).toBeUndefined();
      expect(await repositories.inbox.renewLease("lease-1", "worker-a", -1)).toBe(true); // expired now
      expect(await repositories.inbox.claim("lease-1", "worker-b", 60_000)).toMatchObject({ attempts: 2 });
      expect(await repositories.inbox.renewLease("lease-1", "worker-a", 60_000)).toBe(false);
      await repositories.inbox.release("lease-1", "worker-b", 5, { refundAttempt: true });
      expect(await repositories.inbox.get("lease-1")).toMatchObject({ lease_owner: null, attempts: 1 });
      await repositories.inbox.finish("lease-1", "done", 3000);
      expect(await repositories.inbox.claim("lease-1", "worker-c", 60_000)).toBeUndefined();
      expect((await repositories.inbox.unfinished()).map((row) => row.msgid_server)).not.toContain("lease-1");
    });

    it("answers one message at a time per conversation, in NIM's order", async () => {
      const base = { fromAccid: "u_order", toAccid: "bot", text: "x", now: 0 };
      // Arrival order differs from NIM's stamps on purpose; equal stamps fall back to msgidServer.
      await repositories.inbox.accept({ ...base, msgidServer: "o-3", msgTimestamp: 300 });
      await repositories.inbox.accept({ ...base, msgidServer: "o-2b", msgTimestamp: 200 });
      await repositories.inbox.accept({ ...base, msgidServer: "o-2a", msgTimestamp: 200 });
      await repositories.inbox.accept({ ...base, fromAccid: "u_else", msgidServer: "o-x", msgTimestamp: 900 });
      expect(await repositories.inbox.claim("o-3", "w", 60_000)).toBeUndefined();
      expect(await repositories.inbox.claim("o-2b", "w", 60_000)).toBeUndefined();
      expect(await repositories.inbox.claim("o-x", "w", 60_000)).toBeDefined(); // another conversation
      expect(
        (await repositories.inbox.unclaimed())
          .filter((row) => row.from_accid === "u_order")
          .map((row) => row.msgid_server),
      ).toEqual(["o-2a"]);
      expect(await repositories.inbox.claim("o-2a", "w", 60_000)).toBeDefined();
      // While o-2a is answered nothing else of the conversation is in line or claimable.
      expect(
        (await repositories.inbox.unclaimed())
          .filter((row) => row.from_accid === "u_order")
          .map((row) => row.msgid_server),
      ).toEqual([]);
      await repositories.inbox.finish("o-2a", "done", 1);
      expect((await repositories.inbox.nextInConversation("p2p:bot:u_order"))?.msgid_server).toBe("o-2b");
      // A late message stamped before one that is being answered still waits for it.
      expect(await repositories.inbox.claim("o-2b", "w2", 60_000)).toBeDefined();
      await repositories.inbox.accept({ ...base, msgidServer: "o-1", msgTimestamp: 100 });
      expect(await repositories.inbox.claim("o-1", "w3", 60_000)).toBeUndefined();
    });

    it("commits outbox messages only at the reply's next seq and keeps the plan first written", async () => {
      const create = (streamId: string, plan: string) =>
        repositories.replies.getOrCreate(
          { replyTo: "reply-1", streamId, userAccid: "u_a", conversationId: "p2p:bot:u_a", plan },
          0,
        );
      const reply = await create("stream-1", '{"action":"answer"}');
      expect(reply.next_seq).toBe(0);
      const again = await create("stream-other", '{"action":"skip","reason":"x"}');
      expect(again.stream_id).toBe("stream-1");
      expect(again.plan).toBe('{"action":"answer"}');
      const target = { replyTo: "reply-1", streamId: "stream-1" };
      const row = (seq: number, kind: "segment" | "final", delta: string, done = false) => ({
        seq,
        kind,
        body: "{}",
        delta,
        done,
      });
      expect(await repositories.replies.commitOutbox(target, [row(0, "segment", "你")], 1)).toBe(true);
      expect(await repositories.replies.commitOutbox(target, [row(0, "segment", "X")], 2)).toBe(false);
      expect(
        await repositories.replies.commitOutbox(
          target,
          [row(1, "segment", "好"), { ...row(2, "final", "", true), options: '{"o":1}' }],
          3,
          "ok",
        ),
      ).toBe(true);
      const stored = await repositories.replies.get("reply-1");
      expect(stored).toMatchObject({ text: "你好", next_seq: 3, state: "finished", final_status: "ok" });
      await repositories.replies.markSent("stream-1", [{ seq: 0, nimMsgid: "123" }], 4);
      await repositories.replies.setTransportState("reply-1", '{"k":"v"}', 5);
      expect((await repositories.replies.get("reply-1"))?.transport_state).toBe('{"k":"v"}');
      const outbox = await repositories.replies.outbox("stream-1");
      expect(outbox.map((entry) => [entry.seq, entry.state, entry.delta, entry.done, entry.options])).toEqual([
        [0, "sent", "你", 0, null],
        [1, "pending", "好", 0, null],
        [2, "pending", "", 1, '{"o":1}'],
      ]);
    });

    it("keeps conversation history per conversation within the turn and character budget and resets it", async () => {
      const conversations = repositories.conversations;
      const id = "p2p:bot:u_h";
      for (let index = 0; index < 6; index += 1) {
        await conversations.append(
          {
            conversationId: id,
            userAccid: "u_h",
            role: index % 2 ? "assistant" : "user",
            content: `m${index}`,
            replyTo: `r${index}`,
          },
          index,
        );
      }
      const other = "p2p:other_bot:u_h";
      await conversations.append(
        { conversationId: other, userAccid: "u_h", role: "user", content: "other", replyTo: "o1" },
        7,
      );
      expect(await conversations.recent(id, 4, 1000)).toEqual([
        { role: "user", content: "m2" },
        { role: "assistant", content: "m3" },
        { role: "user", content: "m4" },
        { role: "assistant", content: "m5" },
      ]);
      expect(await conversations.recent(id, 10, 4)).toEqual([
        { role: "user", content: "m4" },
        { role: "assistant", content: "m5" },
      ]);
      expect(await conversations.recent(id, 10, 1000, "r5")).toHaveLength(5);
      expect(await conversations.has(id, "r1", "assistant")).toBe(true);
      expect(await conversations.has(other, "r1", "assistant")).toBe(false);
      await conversations.reset(id, 8);
      expect(await conversations.recent(id, 10, 1000)).toEqual([]);
      await conversations.append(
        { conversationId: id, userAccid: "u_h", role: "user", content: "after", replyTo: "r9" },
        9,
      );
      expect(await conversations.recent(id, 10, 1000)).toEqual([{ role: "user", content: "after" }]);
      expect(await conversations.recent(other, 10, 1000)).toEqual([{ role: "user", content: "other" }]);
    });

    it("folds the sent marks of delivered messages and the transport state into the next commit", async () => {
      const reply = await repositories.replies.getOrCreate(
        { replyTo: "fold-1", streamId: "fold-stream", userAccid: "u_f", conversationId: "p2p:bot:u_f", plan: "{}" },
        0,
      );
      const target = { replyTo: "fold-1", streamId: reply.stream_id };
      const row = (seq: number, delta: string) => ({
        seq,
        kind: "segment" as const,
        body: `{"s":${seq}}`,
        delta,
        done: false,
      });
      expect(await repositories.replies.commitOutbox(target, [row(0, "a"), row(1, "b")], 1)).toBe(true);

      log.clear();
      const settled = {
        sent: [
          { seq: 0, nimMsgid: "9007199254740993001" },
          { seq: 1, nimMsgid: null },
        ],
        transportState: '{"native.inflight":"2"}',
      };
      expect(await repositories.replies.commitOutbox(target, [row(2, "c")], 2, undefined, settled)).toBe(true);
      expect(log.commits).toBe(1);
      // PostgreSQL: one statement, one round trip; SQLite (in-process): one transaction.
      if (database.dialect === "postgres") expect(log.statements).toHaveLength(1);
      else expect(log.transactions).toBe(1);
      const states = async () =>
        (await repositories.replies.outbox(reply.stream_id)).map((entry) => [entry.seq, entry.state, entry.nim_msgid]);
      expect(await states()).toEqual([
        [0, "sent", "9007199254740993001"],
        [1, "sent", null],
        [2, "pending", null],
      ]);
      expect(await repositories.replies.get("fold-1")).toMatchObject({
        text: "abc",
        next_seq: 3,
        transport_state: '{"native.inflight":"2"}',
      });

      // A stale writer's commit changes nothing: not its marks, not the transport state.
      const stale = { sent: [{ seq: 2, nimMsgid: "7" }], transportState: '{"stale":"1"}' };
      expect(await repositories.replies.commitOutbox(target, [row(2, "X")], 3, undefined, stale)).toBe(false);
      expect((await states()).at(-1)).toEqual([2, "pending", null]);
      expect((await repositories.replies.get("fold-1"))?.transport_state).toBe('{"native.inflight":"2"}');

      // Marks still owed when the reply ends go out in one statement; a state write carries them too.
      log.clear();
      await repositories.replies.markSent(reply.stream_id, [{ seq: 2, nimMsgid: "8" }], 4);
      expect(log.data).toHaveLength(1);
      expect(log.commits).toBe(1);
      expect((await states()).at(-1)).toEqual([2, "sent", "8"]);
      expect(await repositories.replies.commitOutbox(target, [row(3, "d"), row(4, "e")], 5)).toBe(true);
      log.clear();
      await repositories.replies.setTransportState("fold-1", '{"k":"w"}', 6, {
        streamId: reply.stream_id,
        marks: [
          { seq: 3, nimMsgid: "9" },
          { seq: 4, nimMsgid: "10" },
        ],
      });
      expect(log.commits).toBe(1);
      expect((await states()).slice(3)).toEqual([
        [3, "sent", "9"],
        [4, "sent", "10"],
      ]);
      expect((await repositories.replies.get("fold-1"))?.transport_state).toBe('{"k":"w"}');
      log.clear();
      await repositories.replies.setTransportState("fold-1", '{"k":"x"}', 7);
      expect(log.statements).toHaveLength(1);
    });

    it("deletes finished exchanges and audit rows older than the retention cutoff, nothing else", async () => {
      const base = { fromAccid: "u_ret", toAccid: "bot", text: "x", msgTimestamp: 1 };
      await repositories.inbox.accept({ ...base, msgidServer: "ret-old", now: 10 });
      await repositories.inbox.accept({ ...base, msgidServer: "ret-open", now: 10 });
      await repositories.inbox.finish("ret-old", "done", 20);
      const reply = await repositories.replies.getOrCreate(
        { replyTo: "ret-old", streamId: "ret-stream", userAccid: "u_ret", conversationId: "p2p:bot:u_ret", plan: "{}" },
        20,
      );
      await repositories.replies.commitOutbox(
        { replyTo: "ret-old", streamId: reply.stream_id },
        [{ seq: 0, kind: "final", body: "{}", delta: "", done: true }],
        20,
        "ok",
      );
      await repositories.audit.record("recent", null, null, 10_000_000);
      const deleted = await repositories.retention.purgeBefore(1_000_000);
      expect(deleted.inbox).toBeGreaterThanOrEqual(1);
      expect(deleted.replies).toBeGreaterThanOrEqual(1);
      expect(deleted.outbox).toBeGreaterThanOrEqual(1);
      expect(await repositories.inbox.get("ret-old")).toBeUndefined();
      expect(await repositories.replies.get("ret-old")).toBeUndefined();
      expect(await repositories.inbox.get("ret-open")).toBeDefined(); // unfinished work is never deleted
      expect(await repositories.audit.list({ event: "recent" })).toHaveLength(1);
    });

    it("uses 64-bit ids for history and audit rows", async () => {
      // A 32-bit integer column (PostgreSQL's before 0003) refuses this id as out of range.
      const big = 2 ** 40;
      await database.kysely
        .insertInto("audit_events")
        .values({ id: big, at: 1, event: "big", subject: null, detail: null })
        .execute();
      await database.kysely
        .insertInto("messages")
        .values({
          id: big,
          conversation_id: "c",
          user_accid: "u",
          role: "user",
          content: "x",
          reply_to: "r",
          created_at: 1,
        })
        .execute();
      expect((await repositories.audit.list({ event: "big" }))[0]?.id).toBe(big);
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
