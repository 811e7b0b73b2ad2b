/**
 * The queries the service needs, one small object per table group. Everything that must be
 * atomic (accepting a callback, committing a segment to the outbox) is one transaction here.
 */
import { type Selectable, sql } from "kysely";
import type { Database } from "./database.ts";
import { isUniqueViolation } from "./database.ts";
import type { AccountTable, InboxTable, OutboxTable, ReplyTable } from "./schema.ts";

export type Account = AccountTable;
export type InboxMessage = Selectable<InboxTable>;
export type Reply = ReplyTable;
export type OutboxMessage = OutboxTable;

export interface ChatTurn {
  role: "user" | "assistant";
  content: string;
}

export class AccountRepository {
  constructor(private readonly database: Database) {}

  async findBySiteUser(siteUserId: string): Promise<Account | undefined> {
    return this.database.kysely
      .selectFrom("accounts")
      .selectAll()
      .where("site_user_id", "=", siteUserId)
      .executeTakeFirst();
  }

  async findByAccid(accid: string): Promise<Account | undefined> {
    return this.database.kysely.selectFrom("accounts").selectAll().where("accid", "=", accid).executeTakeFirst();
  }

  /** Insert, or replace the token of an existing row (the last writer's token is the one NIM has). */
  async upsert(account: { siteUserId: string; accid: string; token: string; name: string | null }, now: number) {
    await this.database.kysely
      .insertInto("accounts")
      .values({
        site_user_id: account.siteUserId,
        accid: account.accid,
        token: account.token,
        name: account.name,
        created_at: now,
        updated_at: now,
      })
      .onConflict((conflict) =>
        conflict.column("site_user_id").doUpdateSet({ token: account.token, name: account.name, updated_at: now }),
      )
      .execute();
  }

  async count(): Promise<number> {
    const row = await this.database.kysely
      .selectFrom("accounts")
      .select((expression) => expression.fn.countAll<number>().as("count"))
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}

export class InboxRepository {
  constructor(private readonly database: Database) {}

  /**
   * Store an accepted user→bot message. Returns false when this msgidServer is already known
   * (NIM redelivered it, or the client resent it): the caller acknowledges without new work.
   */
  async accept(message: {
    msgidServer: string;
    fromAccid: string;
    toAccid: string;
    text: string;
    msgTimestamp: number;
    now: number;
    antispam?: boolean;
  }): Promise<boolean> {
    try {
      await this.database.kysely.transaction().execute(async (transaction) => {
        await transaction
          .insertInto("inbox")
          .values({
            msgid_server: message.msgidServer,
            from_accid: message.fromAccid,
            to_accid: message.toAccid,
            text: message.text,
            msg_timestamp: message.msgTimestamp,
            received_at: message.now,
            status: "accepted",
            attempts: 0,
            lease_owner: null,
            lease_until: null,
            error: null,
            updated_at: message.now,
            antispam: message.antispam ? 1 : 0,
          })
          .execute();
        await transaction
          .insertInto("audit_events")
          .values({
            at: message.now,
            event: "callback.accepted",
            subject: message.msgidServer,
            detail: JSON.stringify({ from: message.fromAccid }),
          })
          .execute();
      });
      return true;
    } catch (error) {
      if (isUniqueViolation(error)) return false;
      throw error;
    }
  }

  async get(msgidServer: string): Promise<InboxMessage | undefined> {
    return this.database.kysely
      .selectFrom("inbox")
      .selectAll()
      .where("msgid_server", "=", msgidServer)
      .executeTakeFirst();
  }

  /** Messages that were accepted but whose reply has not finished: work to resume at start. */
  async unfinished(limit = 10_000): Promise<InboxMessage[]> {
    return this.database.kysely
      .selectFrom("inbox")
      .selectAll()
      .where("status", "in", ["accepted", "processing"])
      .orderBy("received_at")
      .limit(limit)
      .execute();
  }

  /**
   * Claim a message for this worker until `leaseUntil`. Succeeds when it is unclaimed, its lease
   * ran out (its worker died), or this worker already holds it. One reply, one worker at a time.
   */
  async claim(msgidServer: string, owner: string, now: number, leaseUntil: number): Promise<boolean> {
    const result = await this.database.kysely
      .updateTable("inbox")
      .set({
        status: "processing",
        lease_owner: owner,
        lease_until: leaseUntil,
        attempts: sql`attempts + 1`,
        updated_at: now,
      })
      .where("msgid_server", "=", msgidServer)
      .where("status", "in", ["accepted", "processing"])
      .where((expression) =>
        expression.or([
          expression("lease_owner", "is", null),
          expression("lease_until", "<", now),
          expression("lease_owner", "=", owner),
        ]),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async renewLease(msgidServer: string, owner: string, leaseUntil: number): Promise<boolean> {
    const result = await this.database.kysely
      .updateTable("inbox")
      .set({ lease_until: leaseUntil })
      .where("msgid_server", "=", msgidServer)
      .where("lease_owner", "=", owner)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async finish(msgidServer: string, status: "done" | "failed", now: number, error: string | null = null) {
    await this.database.kysely
      .updateTable("inbox")
      .set({ status, lease_owner: null, lease_until: null, error, updated_at: now })
      .where("msgid_server", "=", msgidServer)
      .execute();
  }

  /** Hand a message back (for example on shutdown) so another worker, or the next start, takes it. */
  async release(msgidServer: string, owner: string, now: number) {
    await this.database.kysely
      .updateTable("inbox")
      .set({ lease_owner: null, lease_until: null, updated_at: now })
      .where("msgid_server", "=", msgidServer)
      .where("lease_owner", "=", owner)
      .execute();
  }

  async countByStatus(): Promise<Record<string, number>> {
    const rows = await this.database.kysely
      .selectFrom("inbox")
      .select(["status", (expression) => expression.fn.countAll<number>().as("count")])
      .groupBy("status")
      .execute();
    return Object.fromEntries(rows.map((row) => [row.status, Number(row.count)]));
  }
}

export class ReplyRepository {
  constructor(private readonly database: Database) {}

  async get(replyTo: string): Promise<Reply | undefined> {
    return this.database.kysely.selectFrom("replies").selectAll().where("reply_to", "=", replyTo).executeTakeFirst();
  }

  /** Create the reply row once; a second call (a resumed worker) returns the existing one. */
  async getOrCreate(replyTo: string, streamId: string, userAccid: string, now: number): Promise<Reply> {
    await this.database.kysely
      .insertInto("replies")
      .values({
        reply_to: replyTo,
        stream_id: streamId,
        user_accid: userAccid,
        state: "streaming",
        final_status: null,
        text: "",
        next_seq: 0,
        created_at: now,
        updated_at: now,
      })
      .onConflict((conflict) => conflict.column("reply_to").doNothing())
      .execute();
    const reply = await this.get(replyTo);
    if (!reply) throw new Error(`reply ${replyTo} vanished after insert`);
    return reply;
  }

  /**
   * Commit the next NIM messages of a stream to the outbox and advance the reply, atomically.
   * The first seq must be the reply's next_seq: a stale writer (a worker whose lease was taken
   * over) fails here instead of sending a seq twice. All final parts go in one call, so a crash
   * can never leave a reply with some final parts committed and the rest forgotten.
   */
  async commitOutbox(
    reply: { replyTo: string; streamId: string },
    messages: Array<{ seq: number; body: string; kind: "segment" | "final"; appendText: string }>,
    now: number,
    finalStatus?: string,
  ): Promise<boolean> {
    const first = messages[0];
    const last = messages[messages.length - 1];
    if (!first || !last) return true;
    const appended = messages.map((message) => message.appendText).join("");
    return this.database.kysely.transaction().execute(async (transaction) => {
      const updated = await transaction
        .updateTable("replies")
        .set({
          next_seq: last.seq + 1,
          text: sql`text || ${appended}`,
          updated_at: now,
          ...(finalStatus ? { state: "finished" as const, final_status: finalStatus } : {}),
        })
        .where("reply_to", "=", reply.replyTo)
        .where("next_seq", "=", first.seq)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) return false;
      await transaction
        .insertInto("outbox")
        .values(
          messages.map((message) => ({
            stream_id: reply.streamId,
            seq: message.seq,
            body: message.body,
            kind: message.kind,
            state: "pending" as const,
            nim_msgid: null,
            created_at: now,
            updated_at: now,
          })),
        )
        .execute();
      return true;
    });
  }

  async markSent(streamId: string, seq: number, nimMsgid: string | null, now: number) {
    await this.database.kysely
      .updateTable("outbox")
      .set({ state: "sent", nim_msgid: nimMsgid, updated_at: now })
      .where("stream_id", "=", streamId)
      .where("seq", "=", seq)
      .execute();
  }

  async markFailed(streamId: string, seq: number, now: number) {
    await this.database.kysely
      .updateTable("outbox")
      .set({ state: "failed", updated_at: now })
      .where("stream_id", "=", streamId)
      .where("seq", "=", seq)
      .execute();
  }

  async outbox(streamId: string): Promise<OutboxMessage[]> {
    return this.database.kysely
      .selectFrom("outbox")
      .selectAll()
      .where("stream_id", "=", streamId)
      .orderBy("seq")
      .execute();
  }
}

export class ConversationRepository {
  constructor(private readonly database: Database) {}

  async append(turn: { userAccid: string; role: "user" | "assistant"; content: string; replyTo: string }, now: number) {
    await this.database.kysely
      .insertInto("messages")
      .values({
        user_accid: turn.userAccid,
        role: turn.role,
        content: turn.content,
        reply_to: turn.replyTo,
        created_at: now,
      })
      .execute();
  }

  /** True when this turn was already recorded (a resumed reply must not record it twice). */
  async has(userAccid: string, replyTo: string, role: "user" | "assistant"): Promise<boolean> {
    const row = await this.database.kysely
      .selectFrom("messages")
      .select("id")
      .where("user_accid", "=", userAccid)
      .where("reply_to", "=", replyTo)
      .where("role", "=", role)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * The most recent turns of the current context, oldest first, at most `maxTurns` messages and
   * `maxCharacters` characters in total (the newest are kept), excluding the turn being answered.
   */
  async recent(userAccid: string, maxTurns: number, maxCharacters: number, excludeReplyTo?: string) {
    if (maxTurns === 0) return [];
    const start = await this.database.kysely
      .selectFrom("conversations")
      .select("context_start_message_id")
      .where("user_accid", "=", userAccid)
      .executeTakeFirst();
    let query = this.database.kysely
      .selectFrom("messages")
      .select(["role", "content"])
      .where("user_accid", "=", userAccid)
      .where("id", ">", start?.context_start_message_id ?? 0);
    if (excludeReplyTo) query = query.where("reply_to", "!=", excludeReplyTo);
    const rows = await query.orderBy("id", "desc").limit(maxTurns).execute();
    const turns: ChatTurn[] = [];
    let used = 0;
    for (const row of rows) {
      if (used + row.content.length > maxCharacters) break;
      used += row.content.length;
      turns.push({ role: row.role === "assistant" ? "assistant" : "user", content: row.content });
    }
    return turns.reverse();
  }

  /** Start a new context: nothing said so far is given to the generator again. */
  async reset(userAccid: string, now: number) {
    const row = await this.database.kysely
      .selectFrom("messages")
      .select((expression) => expression.fn.max("id").as("maximum"))
      .executeTakeFirst();
    const maximum = Number(row?.maximum ?? 0);
    await this.database.kysely
      .insertInto("conversations")
      .values({ user_accid: userAccid, context_start_message_id: maximum, updated_at: now })
      .onConflict((conflict) =>
        conflict.column("user_accid").doUpdateSet({ context_start_message_id: maximum, updated_at: now }),
      )
      .execute();
  }
}

export class AuditRepository {
  constructor(private readonly database: Database) {}

  async record(event: string, subject: string | null, detail: Record<string, unknown> | null, now = Date.now()) {
    await this.database.kysely
      .insertInto("audit_events")
      .values({ at: now, event, subject, detail: detail ? JSON.stringify(detail) : null })
      .execute();
  }

  async list(filter: { event?: string; subject?: string } = {}) {
    let query = this.database.kysely.selectFrom("audit_events").selectAll();
    if (filter.event) query = query.where("event", "=", filter.event);
    if (filter.subject) query = query.where("subject", "=", filter.subject);
    return query.orderBy("id").execute();
  }
}

export interface Repositories {
  accounts: AccountRepository;
  inbox: InboxRepository;
  replies: ReplyRepository;
  conversations: ConversationRepository;
  audit: AuditRepository;
}

export function createRepositories(database: Database): Repositories {
  return {
    accounts: new AccountRepository(database),
    inbox: new InboxRepository(database),
    replies: new ReplyRepository(database),
    conversations: new ConversationRepository(database),
    audit: new AuditRepository(database),
  };
}
