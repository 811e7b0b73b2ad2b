/**
 * Migration 0003 moves the first version's rows into conversations: a database written by the
 * first version (migrated to 0002, rows inserted the way its code did) must come out with every
 * row in its P2P conversation, the `done` flag read out of final bodies and /reset contexts kept.
 */
import BetterSqlite3 from "better-sqlite3";
import { Kysely, SqliteDialect, sql } from "kysely";
import { describe, expect, it } from "vitest";
import { migrateToLatest } from "./migrations.ts";

describe("migration 0003_conversations", () => {
  it("moves first-version rows into their P2P conversations", async () => {
    const kysely = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new BetterSqlite3(":memory:") }) });
    await migrateToLatest(kysely, "sqlite", "0002_inbox_antispam");
    await sql`insert into inbox (msgid_server, from_accid, to_accid, text, msg_timestamp, received_at, status, attempts, updated_at)
      values ('m1', 'u_old', 'advisor_bot', 'hi', 1, 1, 'done', 1, 1)`.execute(kysely);
    await sql`insert into replies (reply_to, stream_id, user_accid, state, final_status, text, next_seq, created_at, updated_at)
      values ('m1', 's1', 'u_old', 'finished', 'ok', 'hello', 2, 1, 1)`.execute(kysely);
    await sql`insert into outbox (stream_id, seq, body, kind, state, created_at, updated_at) values
      ('s1', 0, '{"kind":"bot_stream","delta":"hello","done":false}', 'segment', 'sent', 1, 1),
      ('s1', 1, '{"kind":"bot_stream","delta":"","done":true,"status":"ok"}', 'final', 'sent', 1, 1)`.execute(kysely);
    await sql`insert into messages (user_accid, role, content, reply_to, created_at) values
      ('u_old', 'user', 'hi', 'm1', 1), ('u_old', 'assistant', 'hello', 'm1', 1)`.execute(kysely);
    await sql`insert into conversations (user_accid, context_start_message_id, updated_at) values ('u_old', 1, 5)`.execute(
      kysely,
    );

    await migrateToLatest(kysely, "sqlite");

    const conversation = "p2p:advisor_bot:u_old";
    const inbox = await sql<{ conversation_id: string; bot_accid: string; scope: string }>`select * from inbox`.execute(
      kysely,
    );
    expect(inbox.rows[0]).toMatchObject({ conversation_id: conversation, bot_accid: "advisor_bot", scope: "p2p" });
    const replies = await sql<{ conversation_id: string; plan: null }>`select * from replies`.execute(kysely);
    expect(replies.rows[0]).toMatchObject({ conversation_id: conversation, plan: null });
    const outbox = await sql<{ seq: number; done: number }>`select seq, done from outbox order by seq`.execute(kysely);
    expect(outbox.rows).toEqual([
      { seq: 0, done: 0 },
      { seq: 1, done: 1 },
    ]);
    const messages = await sql<{ conversation_id: string }>`select conversation_id from messages`.execute(kysely);
    expect(messages.rows.every((row) => row.conversation_id === conversation)).toBe(true);
    const contexts = await sql`select * from conversation_contexts`.execute(kysely);
    expect(contexts.rows).toEqual([{ conversation_id: conversation, context_start_message_id: 1, updated_at: 5 }]);
    await kysely.destroy();
  });
});
