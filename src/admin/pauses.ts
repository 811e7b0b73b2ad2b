/**
 * Stepping in: an operator pauses a bot or one conversation, or takes a conversation over.
 * Pauses live in `console_pauses` (migration 0004_usage), so they hold across restarts and every
 * instance sees them. Admission asks `pauseCheck` before answering (src/reply/admission.ts).
 *
 * Modes:
 * - `skip`: the message is stored and acknowledged (NIM got its 200 long ago) but not answered;
 *   it stays in the conversation's history so the model sees it after the hand-back;
 * - `note`: it is answered with PAUSED_NOTE (status ok) instead of the model's answer;
 * - `takeover` (conversations only): like `skip`, while an operator answers from the console.
 *
 * A conversation's own pause wins over its bot's.
 *
 * @module
 */
import type { Database } from "../storage/database.ts";
import type { InboxMessage } from "../storage/repositories.ts";

export type PauseScope = "bot" | "conversation";
export type PauseMode = "skip" | "note" | "takeover";

export interface Pause {
  scope: PauseScope;
  target: string;
  mode: PauseMode;
  createdAt: number;
}

/** Said by a paused bot in `note` mode unless PAUSED_NOTE says otherwise. */
export const DEFAULT_PAUSED_NOTE =
  "机器人暂停回答，工作人员稍后会回复你。\nThe bot is paused for now; a person will get back to you.";

export const PAUSE_MODES: readonly PauseMode[] = ["skip", "note", "takeover"];

export class PauseRepository {
  constructor(private readonly database: Database) {}

  async list(): Promise<Pause[]> {
    const rows = await this.database.kysely.selectFrom("console_pauses").selectAll().orderBy("created_at").execute();
    return rows.map(toPause);
  }

  async get(scope: PauseScope, target: string): Promise<Pause | undefined> {
    const row = await this.database.kysely
      .selectFrom("console_pauses")
      .selectAll()
      .where("scope", "=", scope)
      .where("target", "=", target)
      .executeTakeFirst();
    return row ? toPause(row) : undefined;
  }

  /** Sets (or changes the mode of) a pause. */
  async set(scope: PauseScope, target: string, mode: PauseMode, now: number): Promise<void> {
    await this.database.kysely
      .insertInto("console_pauses")
      .values({ scope, target, mode, created_at: now })
      .onConflict((conflict) => conflict.columns(["scope", "target"]).doUpdateSet({ mode }))
      .execute();
  }

  /** Lifts a pause; true when there was one. */
  async remove(scope: PauseScope, target: string): Promise<boolean> {
    const result = await this.database.kysely
      .deleteFrom("console_pauses")
      .where("scope", "=", scope)
      .where("target", "=", target)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  /** The pause that applies to a conversation of a bot: its own first, then the bot's. */
  async effective(botAccid: string, conversationId: string): Promise<Pause | undefined> {
    const rows = await this.database.kysely
      .selectFrom("console_pauses")
      .selectAll()
      .where((expression) =>
        expression.or([
          expression.and([expression("scope", "=", "conversation"), expression("target", "=", conversationId)]),
          expression.and([expression("scope", "=", "bot"), expression("target", "=", botAccid)]),
        ]),
      )
      .execute();
    const pauses = rows.map(toPause);
    return pauses.find((pause) => pause.scope === "conversation") ?? pauses[0];
  }
}

/** The admission hook: undefined (answer), `{}` (stay silent) or `{ note }` (answer with the note). */
export function pauseCheck(
  pauses: Pick<PauseRepository, "effective">,
  pausedNote: string,
): (message: InboxMessage) => Promise<{ note?: string } | undefined> {
  return async (message) => {
    const pause = await pauses.effective(message.bot_accid, message.conversation_id);
    if (!pause) return undefined;
    return pause.mode === "note" ? { note: pausedNote } : {};
  };
}

function toPause(row: { scope: string; target: string; mode: string; created_at: number }): Pause {
  return {
    scope: row.scope === "bot" ? "bot" : "conversation",
    target: row.target,
    mode: (PAUSE_MODES as readonly string[]).includes(row.mode) ? (row.mode as PauseMode) : "skip",
    createdAt: Number(row.created_at),
  };
}
