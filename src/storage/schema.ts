/**
 * Table types shared by SQLite and PostgreSQL. Timestamps are epoch milliseconds (bigint in PG,
 * integer in SQLite, numbers in TS) and JSON is stored as text, so one schema serves both dialects.
 */
import type { Generated } from "kysely";

export interface AccountTable {
  /** The site's own user id, as given to /im/register. */
  site_user_id: string;
  /** NIM accid, lower-case; unique. */
  accid: string;
  token: string;
  name: string | null;
  created_at: number;
  updated_at: number;
}

/** accepted → processing → done | failed */
export type InboxStatus = "accepted" | "processing" | "done" | "failed";

export interface InboxTable {
  /** NIM's server message id: the de-duplication key. Digits, kept as text (it exceeds 2^53 in places). */
  msgid_server: string;
  from_accid: string;
  to_accid: string;
  text: string;
  msg_timestamp: number;
  received_at: number;
  status: InboxStatus;
  attempts: number;
  /** Which worker holds the message and until when (scale-out lease). */
  lease_owner: string | null;
  lease_until: number | null;
  error: string | null;
  updated_at: number;
  /** 1 when NIM flagged the inbound message (`antispam: "true"` in the copy). */
  antispam: Generated<number>;
  /**
   * The conversation this message belongs to (see reply/conversation.ts): replies of one
   * conversation are produced one at a time, in (msg_timestamp, msgid_server) order.
   */
  conversation_id: Generated<string>;
  /** The bot account addressed (for P2P the same as to_accid; for a team the bot that was @-ed). */
  bot_accid: Generated<string>;
  /** p2p | team */
  scope: Generated<string>;
  /** Team id for team messages, else null. */
  team_id: string | null;
  /** NIM's client id of the message (msgidClient), for quoting it. */
  msgid_client: string | null;
  /** text, picture, audio, … (callback/events.ts MessageType). */
  message_type: Generated<string>;
  /** Extra fields of the message as JSON (attachment, ext), or null. */
  payload: string | null;
  /** 1 once NIM's recall copy for this message arrived. */
  recalled: Generated<number>;
}

export type ReplyState = "streaming" | "finished";

/** One streamed answer per inbox message: its progress, so a restart continues it. */
export interface ReplyTable {
  reply_to: string;
  stream_id: string;
  user_accid: string;
  conversation_id: Generated<string>;
  /**
   * The committed decision for this reply (reply/plan.ts) as JSON: made once, before anything is
   * sent, and followed by every later attempt (a resumed reply never decides again).
   */
  plan: string | null;
  /** The transport's small durable state as JSON (a native stream message's server id …). */
  transport_state: string | null;
  state: ReplyState;
  /** ok | error | blocked | limited once finished. */
  final_status: string | null;
  /** Concatenation of the deltas committed to the outbox so far. */
  text: string;
  next_seq: number;
  created_at: number;
  updated_at: number;
}

export type OutboxState = "pending" | "sent" | "failed";

/** Every NIM message of a reply is written here before it is sent (seq is its position). */
export interface OutboxTable {
  stream_id: string;
  seq: number;
  /** The exact NIM body JSON, so a resend after a crash is byte-identical. */
  body: string;
  /** segment | final */
  kind: string;
  /** The text this message adds to the reply ("" for finals). */
  delta: Generated<string>;
  /** 1 on the reply's last message. */
  done: Generated<number>;
  /** Transport-specific delivery options as JSON (NIM option flags, push text), or null. */
  options: string | null;
  state: OutboxState;
  nim_msgid: string | null;
  created_at: number;
  updated_at: number;
}

export interface MessageTable {
  id: Generated<number>;
  /** The conversation (reply/conversation.ts) this turn belongs to. */
  conversation_id: Generated<string>;
  /** The user who said it (user turns) or was answered (assistant turns). */
  user_accid: string;
  /** user | assistant */
  role: string;
  content: string;
  /** The user message's msgidServer this turn belongs to. */
  reply_to: string;
  created_at: number;
}

export interface ConversationContextTable {
  conversation_id: string;
  /** Messages with an id above this belong to the current context (set by /reset). */
  context_start_message_id: number;
  updated_at: number;
}

export interface AuditTable {
  id: Generated<number>;
  at: number;
  /** e.g. callback.rejected, callback.accepted, register.created, reply.final */
  event: string;
  subject: string | null;
  detail: string | null;
}

/** Tokens one reply cost (src/usage): reported by the model's stream, or estimated. */
export interface ReplyUsageTable {
  reply_to: string;
  conversation_id: string;
  bot_accid: string;
  user_accid: string;
  /** YYYY-MM-DD in USAGE_TIME_ZONE: the day budgets and usage charts count in. */
  day: string;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** 1 when the generator reported no usage and the numbers are the documented estimate. */
  estimated: number;
  created_at: number;
  updated_at: number;
}

/** An operator's pause (src/admin): the bot (scope `bot`) or one conversation does not answer. */
export interface ConsolePauseTable {
  /** bot | conversation */
  scope: string;
  /** The bot's accid or the conversation id. */
  target: string;
  /** `skip` (stored, acknowledged, not answered), `note` (answered with PAUSED_NOTE) or `takeover` (an operator answers). */
  mode: string;
  created_at: number;
}

export interface DatabaseSchema {
  accounts: AccountTable;
  inbox: InboxTable;
  replies: ReplyTable;
  outbox: OutboxTable;
  messages: MessageTable;
  conversation_contexts: ConversationContextTable;
  audit_events: AuditTable;
  reply_usage: ReplyUsageTable;
  console_pauses: ConsolePauseTable;
}
