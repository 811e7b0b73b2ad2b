/**
 * What the console reads: conversations (from inbox, replies, outbox, messages), one
 * conversation's exchanges with their timing and NIM sends, and the audit trail. Read-only, and
 * shaped for the page: nothing here returns a token, a key or a message body NIM was sent verbatim
 * beyond the text the user saw.
 *
 * @module
 */
import { type SqlBool, sql } from "kysely";
import type { Database } from "../storage/database.ts";
import type { UsageRepository } from "../usage/repository.ts";
import type { PauseRepository } from "./pauses.ts";

export interface ConversationParts {
  scope: "p2p" | "team";
  botAccid: string;
  /** The user (P2P, or the asker of a per-asker team conversation). */
  userAccid: string | null;
  teamId: string | null;
}

/** Reads `p2p:<bot>:<user>`, `team:<bot>:<tid>` or `team:<bot>:<tid>:<asker>` (reply/conversation.ts). */
export function parseConversationId(conversationId: string): ConversationParts | undefined {
  const parts = conversationId.split(":");
  if (parts[0] === "p2p" && parts.length === 3 && parts[1] && parts[2]) {
    return { scope: "p2p", botAccid: parts[1], userAccid: parts[2], teamId: null };
  }
  if (parts[0] === "team" && (parts.length === 3 || parts.length === 4) && parts[1] && parts[2]) {
    return { scope: "team", botAccid: parts[1], teamId: parts[2], userAccid: parts[3] || null };
  }
  return undefined;
}

export interface ConversationSummary extends ConversationParts {
  conversationId: string;
  /** The site's user id and nickname of the user, when the bridge registered them. */
  siteUserId: string | null;
  userName: string | null;
  lastActivity: number;
  /** Messages the bridge accepted in this conversation (still in the inbox). */
  messages: number;
  /** answering · paused · takeover · the last reply's status (ok, error, limited …) · idle */
  status: string;
  lastText: string | null;
}

/** Keys whose values never leave the server, wherever they appear in an audit row's detail. */
const SECRET_KEY = /token|secret|password|passwd|api[-_]?key|authorization|cookie|checksum|signature/i;

/** A copy of `value` with every secret-looking key's value replaced. */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([key, inner]) => [key, SECRET_KEY.test(key) ? "[redacted]" : redactSecrets(inner)]),
    );
  }
  return value;
}

/** `text` for a LIKE pattern, with LIKE's wildcards taken literally (escape character `\`). */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (character) => `\\${character}`);
}

export class ConsoleQueries {
  constructor(
    private readonly database: Database,
    private readonly usage: UsageRepository,
    private readonly pauses: PauseRepository,
  ) {}

  /**
   * Conversations by last activity, newest first. `query` matches any part of the conversation
   * id (bot accid, user accid, team id) or a user's site id or nickname.
   */
  async listConversations(options: { query?: string; limit: number }): Promise<ConversationSummary[]> {
    const kysely = this.database.kysely;
    const query = options.query?.trim().toLowerCase() ?? "";
    const activity = kysely
      .selectFrom("inbox")
      .select(["conversation_id", "received_at as at"])
      .unionAll(kysely.selectFrom("messages").select(["conversation_id", "created_at as at"]));
    let select = kysely
      .selectFrom(activity.as("activity"))
      .select((expression) => ["conversation_id", expression.fn.max<number>("at").as("last_at")])
      .where("conversation_id", "<>", "");
    if (query) {
      const accids = await kysely
        .selectFrom("accounts")
        .select("accid")
        .where((expression) =>
          expression.or([
            sql<SqlBool>`lower(site_user_id) like ${`%${likeLiteral(query)}%`} escape '\\'`,
            sql<SqlBool>`lower(coalesce(name, '')) like ${`%${likeLiteral(query)}%`} escape '\\'`,
          ]),
        )
        .limit(50)
        .execute();
      const patterns = [`%${likeLiteral(query)}%`, ...accids.map((row) => `%:${likeLiteral(row.accid)}`)];
      select = select.where((expression) =>
        expression.or(patterns.map((pattern) => sql<SqlBool>`conversation_id like ${pattern} escape '\\'`)),
      );
    }
    const rows = await select.groupBy("conversation_id").orderBy(sql`max(at)`, "desc").limit(options.limit).execute();
    return Promise.all(rows.map((row) => this.summarize(row.conversation_id, Number(row.last_at))));
  }

  private async summarize(conversationId: string, lastActivity: number): Promise<ConversationSummary> {
    const kysely = this.database.kysely;
    const parts = parseConversationId(conversationId) ?? {
      scope: "p2p" as const,
      botAccid: "",
      userAccid: null,
      teamId: null,
    };
    const [latest, counted, account, pause] = await Promise.all([
      kysely
        .selectFrom("inbox")
        .select(["msgid_server", "status", "text"])
        .where("conversation_id", "=", conversationId)
        .orderBy("msg_timestamp", "desc")
        .orderBy("msgid_server", "desc")
        .limit(1)
        .executeTakeFirst(),
      kysely
        .selectFrom("inbox")
        .select((expression) => [
          expression.fn.countAll<number>().as("count"),
          expression.fn.sum<number>(sql`case when status in ('accepted', 'processing') then 1 else 0 end`).as("open"),
        ])
        .where("conversation_id", "=", conversationId)
        .executeTakeFirst(),
      parts.userAccid
        ? kysely
            .selectFrom("accounts")
            .select(["site_user_id", "name"])
            .where("accid", "=", parts.userAccid)
            .executeTakeFirst()
        : undefined,
      this.pauses.effective(parts.botAccid, conversationId),
    ]);
    const reply = latest
      ? await kysely
          .selectFrom("replies")
          .select("final_status")
          .where("reply_to", "=", latest.msgid_server)
          .executeTakeFirst()
      : undefined;
    let status = "idle";
    if (pause) status = pause.mode === "takeover" ? "takeover" : "paused";
    else if (Number(counted?.open ?? 0) > 0) status = "answering";
    else if (reply?.final_status) status = reply.final_status;
    else if (latest?.status === "failed") status = "failed";
    return {
      conversationId,
      ...parts,
      siteUserId: account?.site_user_id ?? null,
      userName: account?.name ?? null,
      lastActivity,
      messages: Number(counted?.count ?? 0),
      status,
      lastText: latest?.text ?? null,
    };
  }

  /** One conversation: its exchanges (message, reply, timing, NIM sends, tokens), history and audit. */
  async conversation(conversationId: string, limit = 100) {
    const kysely = this.database.kysely;
    const parts = parseConversationId(conversationId);
    if (!parts) return undefined;
    const inbox = (
      await kysely
        .selectFrom("inbox")
        .select([
          "msgid_server",
          "from_accid",
          "text",
          "message_type",
          "msg_timestamp",
          "received_at",
          "status",
          "attempts",
          "recalled",
          "error",
        ])
        .where("conversation_id", "=", conversationId)
        .orderBy("msg_timestamp", "desc")
        .orderBy("msgid_server", "desc")
        .limit(limit)
        .execute()
    ).reverse();
    const ids = inbox.map((row) => row.msgid_server);
    const replies = ids.length
      ? await kysely
          .selectFrom("replies")
          .select(["reply_to", "stream_id", "state", "final_status", "text", "plan", "created_at", "updated_at"])
          .where("reply_to", "in", ids)
          .execute()
      : [];
    const streams = replies.map((reply) => reply.stream_id);
    const outbox = streams.length
      ? await kysely
          .selectFrom("outbox")
          .select(["stream_id", "seq", "kind", "state", "done", "nim_msgid", "delta", "created_at", "updated_at"])
          .where("stream_id", "in", streams)
          .orderBy("seq")
          .execute()
      : [];
    const usage = await this.usage.forReplies(ids);
    const history = (
      await kysely
        .selectFrom("messages")
        .select(["id", "role", "content", "reply_to", "created_at"])
        .where("conversation_id", "=", conversationId)
        .orderBy("id", "desc")
        .limit(limit * 2)
        .execute()
    ).reverse();
    const audit = await kysely
      .selectFrom("audit_events")
      .select(["id", "at", "event", "subject", "detail"])
      .where((expression) =>
        ids.length
          ? expression.or([expression("subject", "in", ids), expression("subject", "=", conversationId)])
          : expression("subject", "=", conversationId),
      )
      .orderBy("id", "desc")
      .limit(300)
      .execute();
    const account = parts.userAccid
      ? await kysely
          .selectFrom("accounts")
          .select(["site_user_id", "name"])
          .where("accid", "=", parts.userAccid)
          .executeTakeFirst()
      : undefined;

    const exchanges = inbox.map((message) => {
      const reply = replies.find((row) => row.reply_to === message.msgid_server);
      const sends = reply ? outbox.filter((row) => row.stream_id === reply.stream_id) : [];
      const sent = sends.filter((row) => row.state === "sent");
      const firstSegment = sent.length ? Math.min(...sent.map((row) => Number(row.updated_at))) : null;
      const final = sends.find((row) => row.done === 1 && row.state === "sent");
      const cost = usage.find((row) => row.reply_to === message.msgid_server);
      return {
        msgidServer: message.msgid_server,
        from: message.from_accid,
        text: message.text,
        messageType: message.message_type,
        sentAt: Number(message.msg_timestamp),
        receivedAt: Number(message.received_at),
        status: message.status,
        attempts: message.attempts,
        recalled: message.recalled === 1,
        error: message.error,
        reply: reply
          ? {
              streamId: reply.stream_id,
              state: reply.state,
              status: reply.final_status,
              action: planAction(reply.plan),
              text: reply.text,
              firstSegmentAt: firstSegment,
              finalAt: final ? Number(final.updated_at) : null,
              sends: sends.map((row) => ({
                seq: row.seq,
                kind: row.kind,
                state: row.state,
                done: row.done === 1,
                nimMsgid: row.nim_msgid,
                characters: row.delta.length,
                committedAt: Number(row.created_at),
                updatedAt: Number(row.updated_at),
              })),
            }
          : null,
        usage: cost
          ? {
              promptTokens: Number(cost.prompt_tokens),
              completionTokens: Number(cost.completion_tokens),
              totalTokens: Number(cost.total_tokens),
              estimated: cost.estimated === 1,
            }
          : null,
      };
    });
    return {
      conversationId,
      ...parts,
      siteUserId: account?.site_user_id ?? null,
      userName: account?.name ?? null,
      pause: (await this.pauses.effective(parts.botAccid, conversationId)) ?? null,
      exchanges,
      history: history.map((row) => ({
        id: Number(row.id),
        role: row.role,
        content: row.content,
        operator: row.reply_to.startsWith("operator:"),
        at: Number(row.created_at),
      })),
      audit: audit.map((row) => ({
        id: Number(row.id),
        at: Number(row.at),
        event: row.event,
        subject: row.subject,
        detail: row.detail ? redactSecrets(safeJson(row.detail)) : null,
      })),
    };
  }

  /** The newest audit rows, optionally only events starting with `prefix` (e.g. `admin.`). */
  async audit(options: { prefix?: string; limit: number }) {
    let query = this.database.kysely.selectFrom("audit_events").select(["id", "at", "event", "subject", "detail"]);
    if (options.prefix) query = query.where(sql<SqlBool>`event like ${`${likeLiteral(options.prefix)}%`} escape '\\'`);
    const rows = await query.orderBy("id", "desc").limit(options.limit).execute();
    return rows.map((row) => ({
      id: Number(row.id),
      at: Number(row.at),
      event: row.event,
      subject: row.subject,
      detail: row.detail ? redactSecrets(safeJson(row.detail)) : null,
    }));
  }

  /** The bots seen in conversations (for the pause controls). */
  async bots(): Promise<string[]> {
    const rows = await this.database.kysely.selectFrom("inbox").select("bot_accid").distinct().execute();
    return rows.map((row) => row.bot_accid).filter((accid) => accid !== "");
  }
}

function planAction(plan: string | null): string {
  if (!plan) return "answer";
  const value = safeJson(plan) as { action?: unknown; reason?: unknown } | string;
  if (typeof value === "object" && value && typeof value.action === "string") {
    return typeof value.reason === "string" ? `${value.action}: ${value.reason}` : value.action;
  }
  return "unknown";
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
