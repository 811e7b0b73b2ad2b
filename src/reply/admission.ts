/**
 * Admission: the one place a reply's plan is decided (reply/plan.ts). Runs once per message,
 * before anything is sent; the plan is then committed and followed by every later attempt.
 *
 *   recalled? → skip · paused by an operator? → skip or the pause note · /stop? → skip or
 *   "nothing to stop" · /reset? → reset · NIM antispam flag, per-user limits, daily token budget,
 *   input moderation → say (blocked / limited) · otherwise → answer
 *
 * @module
 */
import type { Logger } from "pino";
import type { RateLimit } from "../limits/types.ts";
import type { Moderator } from "../moderation/types.ts";
import type { InboxMessage, Repositories } from "../storage/repositories.ts";
import { isResetCommand, isStopCommand } from "../turns/commands.ts";
import type { TokenBudget } from "../usage/types.ts";
import type { Clock } from "./clock.ts";
import { blockedText, limitedTextWithRetryAfter, nothingToStopText, resetConfirmationText } from "./messages.ts";
import { parsePayload } from "./payload.ts";
import type { ReplyPlan } from "./plan.ts";

export interface AdmissionOptions {
  repositories: Repositories;
  clock: Clock;
  logger: Pick<Logger, "warn">;
  /** Per-user reply limits (per minute and per day) of a bot; a refused message gets status `limited`. */
  replyLimits?: RateLimit | ((botAccid: string) => RateLimit | undefined);
  moderator?: Moderator;
  /** Treat NIM's own antispam flag on the inbound copy as blocked input. */
  respectNimAntispam?: boolean;
  /**
   * Operator console: daily token budgets (src/usage/budget.ts). A spent budget is answered with
   * status `limited` and `budgetSpentText`.
   */
  budget?: TokenBudget;
  /** The note a spent budget is answered with (src/usage/budget.ts budgetSpentText). */
  budgetSpentText?: string;
  /**
   * Operator console: is this message's bot or conversation paused (src/admin/pauses.ts)?
   * Undefined: no. `{}`: stored and acknowledged, not answered. `{ note }`: answered with the note.
   */
  paused?: (message: InboxMessage) => Promise<{ note?: string } | undefined>;
}

/** What the callback route stored about a /stop message (inbox `payload`). */
export interface StopPayload {
  /** The reply the command stopped, when one was running. */
  stopped?: string;
}

export function createAdmission(options: AdmissionOptions): (message: InboxMessage) => Promise<ReplyPlan> {
  const { repositories, clock } = options;
  const audit = (event: string, subject: string, detail: Record<string, unknown>) =>
    repositories.audit.record(event, subject, detail, clock.now());

  return async function decide(message: InboxMessage): Promise<ReplyPlan> {
    if (message.recalled === 1) return { action: "skip", reason: "recalled" };
    const pause = await options.paused?.(message);
    if (pause) {
      // The bot is silent, but the question stays in the conversation's history, so the model
      // sees it (and the operator's answers) once the conversation is handed back. The stored text
      // of this one message: with REPLY_DEBOUNCE_MS `message.text` may be a whole burst, whose
      // other messages are decided (and kept) on their own.
      const stored = await repositories.inbox.get(message.msgid_server);
      if (
        message.message_type === "text" &&
        !(await repositories.conversations.has(message.conversation_id, message.msgid_server, "user"))
      ) {
        await repositories.conversations.append(
          {
            conversationId: message.conversation_id,
            userAccid: message.from_accid,
            role: "user",
            content: stored?.text ?? message.text,
            replyTo: message.msgid_server,
          },
          clock.now(),
        );
      }
      return pause.note ? { action: "say", status: "ok", text: pause.note } : { action: "skip", reason: "paused" };
    }
    if (message.message_type === "text" && isStopCommand(message.text)) {
      const payload = parsePayload<StopPayload>(message.payload);
      // The command stopped a reply: that reply's final says so; the command itself gets nothing.
      return payload.stopped
        ? { action: "skip", reason: "stop command" }
        : { action: "say", status: "ok", text: nothingToStopText };
    }
    if (message.message_type === "text" && isResetCommand(message.text)) {
      return { action: "reset", text: resetConfirmationText };
    }
    if (message.antispam === 1 && options.respectNimAntispam) {
      await audit("reply.blocked", message.msgid_server, { stage: "input", reason: "nim-antispam" });
      return { action: "say", status: "blocked", text: blockedText };
    }
    const limits =
      typeof options.replyLimits === "function" ? options.replyLimits(message.bot_accid) : options.replyLimits;
    if (limits) {
      const decision = await limits.consume(message.from_accid);
      if (!decision.allowed) {
        await audit("reply.limited", message.msgid_server, { retryAfterMs: decision.retryAfterMs });
        return {
          action: "say",
          status: "limited",
          text: limitedTextWithRetryAfter(Math.ceil(decision.retryAfterMs / 1000)),
        };
      }
    }
    if (options.budget) {
      const spent = await options.budget.exhausted({
        userAccid: message.from_accid,
        botAccid: message.bot_accid,
        now: clock.now(),
      });
      if (spent) {
        await audit("reply.limited", message.msgid_server, {
          reason: "token-budget",
          scope: spent.scope,
          limit: spent.limit,
          spent: spent.spent,
          bot: message.bot_accid,
        });
        return { action: "say", status: "limited", text: options.budgetSpentText ?? limitedTextWithRetryAfter(3600) };
      }
    }
    if (options.moderator) {
      const verdict = await options.moderator.checkInput(message.text, { accid: message.from_accid });
      if (!verdict.allowed) {
        await audit("reply.blocked", message.msgid_server, { stage: "input", reason: verdict.reason });
        return { action: "say", status: "blocked", text: blockedText };
      }
    }
    return { action: "answer" };
  };
}
