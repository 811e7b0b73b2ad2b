/**
 * The queries the service needs, one small object per table group. Everything that must be
 * atomic (accepting a callback, committing a segment to the outbox) is one transaction here.
 */
import { type ExpressionBuilder, type Insertable, type Kysely, type Selectable, sql } from "kysely";
import type { Database } from "./database.ts";
import { isUniqueViolation, runWrite } from "./database.ts";
import type { AccountTable, DatabaseSchema, InboxTable, OutboxTable, ReplyTable } from "./schema.ts";

export type Account = AccountTable;
export type InboxMessage = Selectable<InboxTable>;
export type Reply = Selectable<ReplyTable>;
export type OutboxMessage = Selectable<OutboxTable>;

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

/** What the callback route stores for a message a bot must answer. */
export interface AcceptedMessage {
  msgidServer: string;
  fromAccid: string;
  /** NIM's `to`: the bot (P2P) or the team id. */
  toAccid: string;
  text: string;
  msgTimestamp: number;
  now: number;
  antispam?: boolean;
  /** Defaults to the P2P conversation of `toAccid` and `fromAccid`. */
  conversationId?: string;
  botAccid?: string;
  scope?: "p2p" | "team";
  teamId?: string;
  msgidClient?: string;
  messageType?: string;
  /** JSON of what else the reply needs (attachment, ext). */
  payload?: string;
}

export class InboxRepository {
  constructor(private readonly database: Database) {}

  /**
   * Store an accepted message. Returns false when this msgidServer is already known (NIM
   * redelivered it, or the client resent it): the caller acknowledges without new work.
   * Throws when the database cannot store it: the route then answers 503 (never 200 or 500).
   */
  async accept(message: AcceptedMessage): Promise<boolean> {
    const scope = message.scope ?? "p2p";
    const botAccid = message.botAccid ?? message.toAccid;
    const conversationId = message.conversationId ?? `p2p:${botAccid}:${message.fromAccid}`;
    const row: Insertable<InboxTable> = {
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
      conversation_id: conversationId,
      bot_accid: botAccid,
      scope,
      team_id: message.teamId ?? null,
      msgid_client: message.msgidClient ?? null,
      message_type: message.messageType ?? "text",
      payload: message.payload ?? null,
    };
    // One statement on both dialects, committed on its own (it sits on NIM's 5-second ack path):
    // the `callback.accepted` audit row (README, operator console) is written with the inbox row by
    // the same statement — on PostgreSQL a data-modifying CTE, on SQLite (which has none) the
    // trigger `inbox_accepted_audit` of migration 0005. A redelivery fails the primary key and the
    // whole statement, audit row included.
    try {
      if (this.database.dialect === "postgres") {
        await this.database.kysely
          .with("accepted", (database) => database.insertInto("inbox").values(row).returning("msgid_server"))
          .insertInto("audit_events")
          .columns(["at", "event", "subject", "detail"])
          .expression((database) =>
            database
              .selectFrom("accepted")
              .select([
                sql<number>`${message.now}::bigint`.as("at"),
                sql<string>`${"callback.accepted"}::text`.as("event"),
                "accepted.msgid_server",
                sql<string>`${acceptedDetail(message.fromAccid, conversationId)}::text`.as("detail"),
              ]),
          )
          .execute();
      } else if (this.database.groupCommit) {
        // Group commit: the callbacks of one event-loop turn share one transaction; each is acked
        // only after it committed.
        const columns = Object.keys(row);
        const statement = `insert into inbox (${columns.join(", ")}) values (${columns.map(() => "?").join(", ")})`;
        const values = Object.values(row);
        await this.database.groupCommit.submit((database) => database.run(statement, values), {
          singleStatement: true,
        });
      } else {
        await this.database.kysely.insertInto("inbox").values(row).execute();
      }
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
      .orderBy("msg_timestamp")
      .orderBy("msgid_server")
      .limit(limit)
      .execute();
  }

  /**
   * Unfinished messages nobody works on (never claimed, released, or whose lease ran out by the
   * database's clock) and that are first in line in their conversation: what a sweep re-enqueues.
   */
  async unclaimed(limit = 10_000): Promise<InboxMessage[]> {
    const now = databaseNow(this.database);
    return this.database.kysely
      .selectFrom("inbox as candidate")
      .selectAll()
      .where("candidate.status", "in", ["accepted", "processing"])
      .where((expression) =>
        expression.or([expression("candidate.lease_owner", "is", null), expression("candidate.lease_until", "<", now)]),
      )
      .where(({ not, exists, selectFrom }) => not(exists(earlierUnfinished(selectFrom))))
      .orderBy("candidate.msg_timestamp")
      .orderBy("candidate.msgid_server")
      .limit(limit)
      .execute();
  }

  /**
   * Claim a message for this worker for `leaseMs` by the database's clock (hosts' clocks may
   * differ; the database's is the one every instance shares). Succeeds when it is unclaimed, its
   * lease ran out (its worker died), or this worker already holds it, and when no earlier
   * unfinished message of its conversation exists and no other message of it is being answered:
   * one reply at a time per conversation, in (msg_timestamp, msgid_server) order. Counts an
   * attempt. Returns the claimed row, or undefined.
   */
  async claim(msgidServer: string, owner: string, leaseMs: number): Promise<InboxMessage | undefined> {
    const now = databaseNow(this.database);
    const claimed = await runWrite(
      this.database,
      this.database.kysely
        .updateTable("inbox as candidate")
        .set({
          status: "processing",
          lease_owner: owner,
          lease_until: sql`${now} + ${leaseMs}`,
          attempts: sql`attempts + 1`,
          updated_at: now,
        })
        .where("candidate.msgid_server", "=", msgidServer)
        .where("candidate.status", "in", ["accepted", "processing"])
        .where((expression) =>
          expression.or([
            expression("candidate.lease_owner", "is", null),
            expression("candidate.lease_until", "<", now),
            expression("candidate.lease_owner", "=", owner),
          ]),
        )
        .where(({ not, exists, selectFrom }) => not(exists(earlierUnfinished(selectFrom))))
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom("inbox as other")
                .select("other.msgid_server")
                .whereRef("other.conversation_id", "=", "candidate.conversation_id")
                .whereRef("other.msgid_server", "!=", "candidate.msgid_server")
                .where("other.status", "=", "processing")
                .where("other.lease_owner", "is not", null)
                .where("other.lease_until", ">=", now),
            ),
          ),
        ),
    );
    if (claimed !== 1) return undefined;
    return this.get(msgidServer);
  }

  /** Extends this worker's lease by `leaseMs` from the database's now; false when it lost it. */
  async renewLease(msgidServer: string, owner: string, leaseMs: number): Promise<boolean> {
    const now = databaseNow(this.database);
    const result = await this.database.kysely
      .updateTable("inbox")
      .set({ lease_until: sql`${now} + ${leaseMs}` })
      .where("msgid_server", "=", msgidServer)
      .where("lease_owner", "=", owner)
      .where("status", "=", "processing")
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async finish(msgidServer: string, status: "done" | "failed", now: number, error: string | null = null) {
    await runWrite(
      this.database,
      this.database.kysely
        .updateTable("inbox")
        .set({ status, lease_owner: null, lease_until: null, error, updated_at: now })
        .where("msgid_server", "=", msgidServer),
    );
  }

  /**
   * Hand a message back (shutdown, cancellation) so another worker, or the next start, takes it at
   * once. `refundAttempt` gives back the attempt the claim counted: a clean hand-over is not a
   * failure and must not bring a message closer to REPLY_MAX_ATTEMPTS.
   */
  async release(msgidServer: string, owner: string, now: number, options: { refundAttempt?: boolean } = {}) {
    await this.database.kysely
      .updateTable("inbox")
      .set({
        lease_owner: null,
        lease_until: null,
        updated_at: now,
        ...(options.refundAttempt ? { attempts: sql`case when attempts > 0 then attempts - 1 else 0 end` } : {}),
      })
      .where("msgid_server", "=", msgidServer)
      .where("lease_owner", "=", owner)
      .execute();
  }

  /** The first unfinished message of a conversation (the next one to answer), if any. */
  async nextInConversation(conversationId: string): Promise<InboxMessage | undefined> {
    return this.database.kysely
      .selectFrom("inbox")
      .selectAll()
      .where("conversation_id", "=", conversationId)
      .where("status", "in", ["accepted", "processing"])
      .orderBy("msg_timestamp")
      .orderBy("msgid_server")
      .limit(1)
      .executeTakeFirst();
  }

  /** Accepted messages of a conversation after this one (NIM's order), for merging a burst. */
  async acceptedAfter(message: Pick<InboxMessage, "conversation_id" | "msg_timestamp" | "msgid_server">) {
    return this.database.kysely
      .selectFrom("inbox")
      .selectAll()
      .where("conversation_id", "=", message.conversation_id)
      .where("status", "=", "accepted")
      .where((expression) =>
        expression.or([
          expression("msg_timestamp", ">", message.msg_timestamp),
          expression.and([
            expression("msg_timestamp", "=", message.msg_timestamp),
            expression("msgid_server", ">", message.msgid_server),
          ]),
        ]),
      )
      .orderBy("msg_timestamp")
      .orderBy("msgid_server")
      .limit(100)
      .execute();
  }

  /**
   * Marks NIM's message recalled: its row, or the rows of every bot a team message woke
   * (`msgidServer#bot`). Returns the rows (none when the bridge never took that message).
   */
  async markRecalled(msgidServer: string, now: number): Promise<InboxMessage[]> {
    const ofMessage = (expression: ExpressionBuilder<DatabaseSchema, "inbox">) =>
      expression.or([
        expression("msgid_server", "=", msgidServer),
        expression("msgid_server", "like", `${msgidServer}#%`),
      ]);
    await this.database.kysely.updateTable("inbox").set({ recalled: 1, updated_at: now }).where(ofMessage).execute();
    return this.database.kysely.selectFrom("inbox").selectAll().where(ofMessage).execute();
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

/**
 * The detail of a `callback.accepted` audit row. SQLite's trigger (migration 0005) writes the same
 * text with json_object: keep the two in step.
 */
function acceptedDetail(fromAccid: string, conversationId: string): string {
  return JSON.stringify({ from: fromAccid, conversation: conversationId });
}

/** An unfinished message of the candidate's conversation that NIM stamped before it. */
// biome-ignore lint/suspicious/noExplicitAny: Kysely's selectFrom of an aliased self-join is not nameable here.
function earlierUnfinished(selectFrom: any) {
  return selectFrom("inbox as earlier")
    .select("earlier.msgid_server")
    .whereRef("earlier.conversation_id", "=", "candidate.conversation_id")
    .where("earlier.status", "in", ["accepted", "processing"])
    .where(
      (
        expression: ExpressionBuilder<
          DatabaseSchema & { earlier: InboxTable; candidate: InboxTable },
          "earlier" | "candidate"
        >,
      ) =>
        expression.or([
          expression("earlier.msg_timestamp", "<", expression.ref("candidate.msg_timestamp")),
          expression.and([
            expression("earlier.msg_timestamp", "=", expression.ref("candidate.msg_timestamp")),
            expression("earlier.msgid_server", "<", expression.ref("candidate.msgid_server")),
          ]),
        ]),
    );
}

/**
 * The database's current time in epoch milliseconds, as an SQL expression: every instance's
 * leases are compared with one clock, whatever the hosts' clocks say.
 */
export function databaseNow(database: Database) {
  return database.dialect === "postgres"
    ? sql<number>`(floor(extract(epoch from clock_timestamp()) * 1000))::bigint`
    : sql<number>`cast((julianday('now') - 2440587.5) * 86400000 as integer)`;
}

/** The committed decision for a reply; see reply/plan.ts for its meaning. */
export interface OutboxRow {
  seq: number;
  kind: "segment" | "final";
  body: string;
  delta: string;
  done: boolean;
  options?: string;
}

/** A delivered message of a reply: its seq and NIM's id for it. */
export interface SentMark {
  seq: number;
  nimMsgid: string | null;
}

/** What a reply's next commit also settles (see ReplyRepository.commitOutbox). */
export interface SettledWithCommit {
  /** Messages delivered since the last commit: marked sent in the same transaction. */
  sent?: SentMark[];
  /** The reply's whole transport state, stored in the same transaction (the native in-flight marker). */
  transportState?: string;
}

/** NIM's id for each marked row: a CASE on seq, or the one id when there is one mark. */
function nimMsgidOf(marks: SentMark[]) {
  const [only] = marks;
  // Casts so PostgreSQL types the parameters (a CASE of bare parameters has no type to go by).
  if (marks.length === 1 && only) return sql<string | null>`cast(${only.nimMsgid} as text)`;
  return sql<string | null>`case seq ${sql.join(
    marks.map((mark) => sql`when ${mark.seq} then cast(${mark.nimMsgid} as text)`),
    sql` `,
  )} end`;
}

/** One UPDATE for any number of marks. */
function markSentQuery(executor: Kysely<DatabaseSchema>, streamId: string, marks: SentMark[], now: number) {
  const nimMsgid = nimMsgidOf(marks);
  return executor
    .updateTable("outbox")
    .set({ state: "sent", nim_msgid: nimMsgid, updated_at: now })
    .where("stream_id", "=", streamId)
    .where(
      "seq",
      "in",
      marks.map((mark) => mark.seq),
    );
}

export class ReplyRepository {
  constructor(private readonly database: Database) {}

  async get(replyTo: string): Promise<Reply | undefined> {
    return this.database.kysely.selectFrom("replies").selectAll().where("reply_to", "=", replyTo).executeTakeFirst();
  }

  /**
   * Create the reply row once, with its plan; a second call (a resumed worker) returns the
   * existing row and its plan unchanged. A row from the first version (no plan) gets this plan.
   */
  async getOrCreate(
    input: { replyTo: string; streamId: string; userAccid: string; conversationId: string; plan: string },
    now: number,
  ): Promise<Reply> {
    await runWrite(
      this.database,
      this.database.kysely
        .insertInto("replies")
        .values({
          reply_to: input.replyTo,
          stream_id: input.streamId,
          user_accid: input.userAccid,
          conversation_id: input.conversationId,
          plan: input.plan,
          transport_state: null,
          state: "streaming",
          final_status: null,
          text: "",
          next_seq: 0,
          created_at: now,
          updated_at: now,
        })
        .onConflict((conflict) => conflict.column("reply_to").doNothing()),
    );
    await runWrite(
      this.database,
      this.database.kysely
        .updateTable("replies")
        .set({ plan: input.plan })
        .where("reply_to", "=", input.replyTo)
        .where("plan", "is", null),
    );
    const reply = await this.get(input.replyTo);
    if (!reply) throw new Error(`reply ${input.replyTo} vanished after insert`);
    return reply;
  }

  /**
   * Commit the next NIM messages of a stream to the outbox and advance the reply, atomically.
   * The first seq must be the reply's next_seq: a stale writer (a worker whose lease was taken
   * over) fails here instead of sending a seq twice. All final parts go in one call, so a crash
   * can never leave a reply with some final parts committed and the rest forgotten.
   *
   * `settled` rides along in the same transaction, so a steady stream costs one commit per
   * message: the sent marks of the messages delivered since the previous commit, and the transport
   * state the first new message needs stored before it is sent. A stale writer's commit changes
   * neither.
   */
  async commitOutbox(
    reply: { replyTo: string; streamId: string },
    messages: OutboxRow[],
    now: number,
    finalStatus?: string,
    settled: SettledWithCommit = {},
  ): Promise<boolean> {
    const first = messages[0];
    const last = messages[messages.length - 1];
    if (!first || !last) return true;
    const appended = messages.map((message) => message.delta).join("");
    if (this.database.dialect === "postgres") {
      return this.commitOutboxInOneStatement(reply, messages, now, finalStatus, settled);
    }
    const group = this.database.groupCommit;
    if (group) {
      // SQLite: in the group transaction of this event-loop turn, as prepared statements.
      return group.submit((database) => {
        const assignments = ["next_seq = ?", "text = text || ?", "updated_at = ?"];
        const values: unknown[] = [last.seq + 1, appended, now];
        if (finalStatus) {
          assignments.push("state = 'finished'", "final_status = ?");
          values.push(finalStatus);
        }
        if (settled.transportState !== undefined) {
          assignments.push("transport_state = ?");
          values.push(settled.transportState);
        }
        const advanced = database.run(
          `update replies set ${assignments.join(", ")} where reply_to = ? and next_seq = ?`,
          [...values, reply.replyTo, first.seq],
        );
        // Another worker committed this seq: nothing of this commit is written.
        if (advanced.changes !== 1) return false;
        for (const mark of settled.sent ?? []) {
          database.run(
            "update outbox set state = 'sent', nim_msgid = ?, updated_at = ? where stream_id = ? and seq = ?",
            [mark.nimMsgid, now, reply.streamId, mark.seq],
          );
        }
        for (const message of messages) {
          database.run(
            "insert into outbox (stream_id, seq, body, kind, delta, done, options, state, nim_msgid, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, 'pending', null, ?, ?)",
            [
              reply.streamId,
              message.seq,
              message.body,
              message.kind,
              message.delta,
              message.done ? 1 : 0,
              message.options ?? null,
              now,
              now,
            ],
          );
        }
        return true;
      });
    }
    return this.database.kysely.transaction().execute(async (transaction) => {
      const updated = await transaction
        .updateTable("replies")
        .set({
          next_seq: last.seq + 1,
          text: sql`text || ${appended}`,
          updated_at: now,
          ...(finalStatus ? { state: "finished" as const, final_status: finalStatus } : {}),
          ...(settled.transportState !== undefined ? { transport_state: settled.transportState } : {}),
        })
        .where("reply_to", "=", reply.replyTo)
        .where("next_seq", "=", first.seq)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) return false;
      if (settled.sent?.length) await markSentQuery(transaction, reply.streamId, settled.sent, now).execute();
      await transaction
        .insertInto("outbox")
        .values(
          messages.map((message) => ({
            stream_id: reply.streamId,
            seq: message.seq,
            body: message.body,
            kind: message.kind,
            delta: message.delta,
            done: message.done ? 1 : 0,
            options: message.options ?? null,
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

  /**
   * PostgreSQL: the same commit as one statement, autocommitted: one round trip and one short hold
   * of a pooled connection per message instead of five (BEGIN, UPDATE, INSERT, UPDATE, COMMIT). The
   * reply's UPDATE is the seq check: the outbox rows and the marks are written only when it matched
   * (`exists (select from advanced)`); a stale writer's UPDATE matches nothing, so nothing changes.
   * Parameters are cast because a UNION ALL of bare parameters would be typed text.
   */
  private async commitOutboxInOneStatement(
    reply: { replyTo: string; streamId: string },
    messages: OutboxRow[],
    now: number,
    finalStatus: string | undefined,
    settled: SettledWithCommit,
  ): Promise<boolean> {
    const first = messages[0] as OutboxRow;
    const last = messages[messages.length - 1] as OutboxRow;
    const appended = messages.map((message) => message.delta).join("");
    const assignments = [
      sql`next_seq = ${last.seq + 1}::integer`,
      sql`text = text || ${appended}::text`,
      sql`updated_at = ${now}::bigint`,
    ];
    if (finalStatus) assignments.push(sql`state = 'finished'`, sql`final_status = ${finalStatus}::text`);
    if (settled.transportState !== undefined) {
      assignments.push(sql`transport_state = ${settled.transportState}::text`);
    }
    const marks = settled.sent ?? [];
    const marked = marks.length
      ? sql`, marked as (
          update outbox set state = 'sent', nim_msgid = ${nimMsgidOf(marks)}, updated_at = ${now}::bigint
          where stream_id = ${reply.streamId}::text and seq in (${sql.join(marks.map((mark) => sql`${mark.seq}::integer`))})
            and exists (select 1 from advanced)
        )`
      : sql``;
    const rows = sql.join(
      messages.map(
        (message) =>
          sql`select ${reply.streamId}::text, ${message.seq}::integer, ${message.body}::text, ${message.kind}::text,
            ${message.delta}::text, ${message.done ? 1 : 0}::integer, ${message.options ?? null}::text,
            'pending'::text, null::text, ${now}::bigint, ${now}::bigint from advanced`,
      ),
      sql` union all `,
    );
    const result = await sql<{ seq: number }>`with advanced as (
        update replies set ${sql.join(assignments)}
        where reply_to = ${reply.replyTo}::text and next_seq = ${first.seq}::integer
        returning reply_to
      )${marked}
      insert into outbox (stream_id, seq, body, kind, delta, done, options, state, nim_msgid, created_at, updated_at)
      ${rows}
      returning seq`.execute(this.database.kysely);
    return result.rows.length === messages.length;
  }

  /**
   * Stores the reply's transport state. `sent` marks delivered messages of the reply in the same
   * transaction: a transport's marker written before a later send must never be durable while an
   * earlier delivered message still reads as unsent (see ReplyWriter).
   */
  async setTransportState(replyTo: string, state: string, now: number, sent?: { streamId: string; marks: SentMark[] }) {
    const store = (executor: Kysely<DatabaseSchema>) =>
      executor
        .updateTable("replies")
        .set({ transport_state: state, updated_at: now })
        .where("reply_to", "=", replyTo)
        .execute();
    if (!sent?.marks.length) {
      await store(this.database.kysely);
      return;
    }
    await this.database.kysely.transaction().execute(async (transaction) => {
      await store(transaction);
      await markSentQuery(transaction, sent.streamId, sent.marks, now).execute();
    });
  }

  /** Marks delivered messages sent, with NIM's ids, in one statement. */
  async markSent(streamId: string, marks: SentMark[], now: number) {
    if (marks.length === 0) return;
    await runWrite(this.database, markSentQuery(this.database.kysely, streamId, marks, now));
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

  async append(
    turn: { conversationId: string; userAccid: string; role: "user" | "assistant"; content: string; replyTo: string },
    now: number,
  ) {
    await runWrite(
      this.database,
      this.database.kysely.insertInto("messages").values({
        conversation_id: turn.conversationId,
        user_accid: turn.userAccid,
        role: turn.role,
        content: turn.content,
        reply_to: turn.replyTo,
        created_at: now,
      }),
    );
  }

  /** True when this turn was already recorded (a resumed reply must not record it twice). */
  async has(conversationId: string, replyTo: string, role: "user" | "assistant"): Promise<boolean> {
    const row = await this.database.kysely
      .selectFrom("messages")
      .select("id")
      .where("conversation_id", "=", conversationId)
      .where("reply_to", "=", replyTo)
      .where("role", "=", role)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * The most recent turns of the current context, oldest first, at most `maxTurns` messages and
   * `maxCharacters` characters in total (the newest are kept), excluding the turn being answered.
   */
  async recent(conversationId: string, maxTurns: number, maxCharacters: number, excludeReplyTo?: string) {
    if (maxTurns === 0) return [];
    const start = await this.database.kysely
      .selectFrom("conversation_contexts")
      .select("context_start_message_id")
      .where("conversation_id", "=", conversationId)
      .executeTakeFirst();
    let query = this.database.kysely
      .selectFrom("messages")
      .select(["role", "content"])
      .where("conversation_id", "=", conversationId)
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
  async reset(conversationId: string, now: number) {
    const row = await this.database.kysely
      .selectFrom("messages")
      .select((expression) => expression.fn.max("id").as("maximum"))
      .executeTakeFirst();
    const maximum = Number(row?.maximum ?? 0);
    await this.database.kysely
      .insertInto("conversation_contexts")
      .values({ conversation_id: conversationId, context_start_message_id: maximum, updated_at: now })
      .onConflict((conflict) =>
        conflict.column("conversation_id").doUpdateSet({ context_start_message_id: maximum, updated_at: now }),
      )
      .execute();
  }
}

export class AuditRepository {
  constructor(private readonly database: Database) {}

  async record(event: string, subject: string | null, detail: Record<string, unknown> | null, now = Date.now()) {
    await runWrite(
      this.database,
      this.database.kysely
        .insertInto("audit_events")
        .values({ at: now, event, subject, detail: detail ? JSON.stringify(detail) : null }),
    );
  }

  /** Deletes audit rows older than `cutoff` (epoch ms); returns how many. */
  async purgeBefore(cutoff: number): Promise<number> {
    const result = await this.database.kysely.deleteFrom("audit_events").where("at", "<", cutoff).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async list(filter: { event?: string; subject?: string } = {}) {
    let query = this.database.kysely.selectFrom("audit_events").selectAll();
    if (filter.event) query = query.where("event", "=", filter.event);
    if (filter.subject) query = query.where("subject", "=", filter.subject);
    return query.orderBy("id").execute();
  }
}

/**
 * RETENTION_DAYS: what a finished exchange leaves behind (inbox row, reply row, outbox bodies) and
 * audit rows are deleted after that long. Conversation history (messages) is the bot's memory and
 * is kept; /reset and the history budget bound what the generator sees.
 */
export class RetentionRepository {
  constructor(private readonly database: Database) {}

  async purgeBefore(cutoff: number): Promise<{ inbox: number; replies: number; outbox: number; audit: number }> {
    const kysely = this.database.kysely;
    return kysely.transaction().execute(async (transaction) => {
      const outbox = await transaction
        .deleteFrom("outbox")
        .where("stream_id", "in", (query) =>
          query
            .selectFrom("replies")
            .select("stream_id")
            .where("state", "=", "finished")
            .where("updated_at", "<", cutoff),
        )
        .executeTakeFirst();
      const replies = await transaction
        .deleteFrom("replies")
        .where("state", "=", "finished")
        .where("updated_at", "<", cutoff)
        .executeTakeFirst();
      const inbox = await transaction
        .deleteFrom("inbox")
        .where("status", "in", ["done", "failed"])
        .where("updated_at", "<", cutoff)
        .executeTakeFirst();
      const audit = await transaction.deleteFrom("audit_events").where("at", "<", cutoff).executeTakeFirst();
      return {
        inbox: Number(inbox.numDeletedRows),
        replies: Number(replies.numDeletedRows),
        outbox: Number(outbox.numDeletedRows),
        audit: Number(audit.numDeletedRows),
      };
    });
  }
}

export interface Repositories {
  accounts: AccountRepository;
  inbox: InboxRepository;
  replies: ReplyRepository;
  conversations: ConversationRepository;
  audit: AuditRepository;
  retention: RetentionRepository;
}

export function createRepositories(database: Database): Repositories {
  return {
    accounts: new AccountRepository(database),
    inbox: new InboxRepository(database),
    replies: new ReplyRepository(database),
    conversations: new ConversationRepository(database),
    audit: new AuditRepository(database),
    retention: new RetentionRepository(database),
  };
}
