/**
 * User-to-user moderation (MODERATE_USER_MESSAGES=true): TEXT messages that users send each other,
 * person to person or in a team, reach im-bridge as NIM's message copy (抄送) after NIM delivered
 * them. Each is checked with the same moderators as the bot's input; a blocked one is withdrawn
 * through NIM's `msg/recall.action`, its sender gets a short notice from the bot, and every step is
 * audited.
 *
 * The copy arrives after delivery, so the receiver may see the message for the moment the check
 * takes; NIM's before-delivery hook (第三方回调, see ../intercept/) closes that gap where it is
 * enabled. The work runs in the background: the callback route only calls `consider(event)` and
 * answers NIM at once. Nothing is stored durably for it, so a copy that arrives while the process
 * dies is not checked again (NIM's redelivery, where it happens, brings it back); a copy delivered
 * twice is checked once per process (a bounded memory of recent msgidServer values).
 *
 * Messages this module leaves alone: anything that is not TEXT, messages from a bot, P2P messages
 * to a bot (the reply pipeline checks those), super-team messages (another recall endpoint).
 */
import type { MessageEvent } from "../callback/events.ts";
import { isNimError } from "../nim/errors.ts";
import type { NimClient } from "../nim/types.ts";
import type { AuditRepository } from "../storage/repositories.ts";
import { nimAntispamVerdict } from "./index.ts";
import type { ModerationVerdict, Moderator } from "./types.ts";

/** What the module logs through; a pino Logger fits. */
export interface UserModerationLogger {
  info(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
  error(details: Record<string, unknown>, message: string): void;
}

export interface UserMessageModerationOptions {
  moderator: Moderator;
  nim: Pick<NimClient, "recallMessage" | "sendMessage">;
  audit: Pick<AuditRepository, "record">;
  /** Whether an accid is one of the bridge's bots (lower-cased input). */
  isBot: (accid: string) => boolean;
  /** The bot that sends the notice to the sender. */
  noticeFrom: string;
  /** MODERATION_RECALL: withdraw a blocked message (default true); false only audits and notifies. */
  recall: boolean;
  /** MODERATION_RECALL_NOTICE; "" sends none. */
  notice: string;
  /** MODERATION_RESPECT_NIM_ANTISPAM: a copy NIM flagged counts as blocked. */
  respectNimAntispam: boolean;
  logger?: UserModerationLogger;
  now?: () => number;
  /** How many recent msgidServer values are remembered to skip redelivered copies. Default 10 000. */
  rememberedMessages?: number;
}

export type UserMessageOutcome =
  | { kind: "skipped"; why: "not-text" | "from-bot" | "to-bot" | "super-team" | "duplicate" }
  | { kind: "allowed" }
  | { kind: "blocked"; recalled: boolean; notified: boolean };

export interface UserMessageModeration {
  /**
   * The one call of the callback route, for every message event after verification: returns at
   * once, the check runs in the background (its failures are logged, never thrown).
   */
  consider(event: MessageEvent): void;
  /** The check itself, awaited (tests, and `consider`'s background work). */
  check(event: MessageEvent): Promise<UserMessageOutcome>;
  /** Resolves when every background check started so far has finished (shutdown, tests). */
  idle(): Promise<void>;
}

/** The description NIM shows in place of a recalled message (at most 128 characters). */
const RECALL_DESCRIPTION = "消息已被撤回 / message withdrawn";

export function createUserMessageModeration(options: UserMessageModerationOptions): UserMessageModeration {
  const now = options.now ?? Date.now;
  const remembered = Math.max(1, options.rememberedMessages ?? 10_000);
  const seen = new Set<string>();
  const pending = new Set<Promise<unknown>>();

  function remember(msgidServer: string): boolean {
    if (seen.has(msgidServer)) return false;
    seen.add(msgidServer);
    // A Set iterates in insertion order: the first entry is the oldest.
    if (seen.size > remembered) seen.delete(seen.values().next().value as string);
    return true;
  }

  function skipReason(event: MessageEvent): Extract<UserMessageOutcome, { kind: "skipped" }>["why"] | undefined {
    if (event.messageType !== "text" || event.text === undefined) return "not-text";
    if (options.isBot(event.fromAccount.toLowerCase())) return "from-bot";
    if (event.conversation === "super-team") return "super-team";
    if (event.conversation === "person" && options.isBot(event.to.toLowerCase())) return "to-bot";
    return undefined;
  }

  async function verdictFor(event: MessageEvent & { text: string }): Promise<ModerationVerdict> {
    if (options.respectNimAntispam) {
      const nim = nimAntispamVerdict(event.antispam);
      if (!nim.allowed) return nim;
    }
    return options.moderator.checkInput(event.text, { accid: event.fromAccount.toLowerCase() });
  }

  async function check(event: MessageEvent): Promise<UserMessageOutcome> {
    const why = skipReason(event);
    if (why) return { kind: "skipped", why };
    if (!remember(event.msgidServer)) return { kind: "skipped", why: "duplicate" };
    try {
      return await checkOnce(event);
    } catch (error) {
      // Not checked after all: a redelivered copy may try again.
      seen.delete(event.msgidServer);
      throw error;
    }
  }

  async function checkOnce(event: MessageEvent): Promise<UserMessageOutcome> {
    const from = event.fromAccount.toLowerCase();
    const to = event.conversation === "person" ? event.to.toLowerCase() : event.to;
    const conversation = event.conversation === "team" ? "team" : "person";
    const subject = event.msgidServer;

    const verdict = await verdictFor(event as MessageEvent & { text: string });
    if (verdict.allowed) return { kind: "allowed" };

    // The reason may name the matched term: it goes to the audit row (for operators), never to users.
    await options.audit.record(
      "moderation.user_message.blocked",
      subject,
      { from, to, conversation, reason: verdict.reason, category: verdict.category ?? null },
      now(),
    );
    options.logger?.info({ msgidServer: subject, from, conversation }, "user message blocked by moderation");

    let recalled = false;
    if (options.recall) {
      try {
        await options.nim.recallMessage({
          msgidServer: event.msgidServer,
          timetag: event.msgTimestamp,
          conversation,
          from,
          to,
          description: RECALL_DESCRIPTION,
          // The copy and the check take time; NIM's recall time limit must not save the message.
          ignoreTimeLimit: true,
        });
        recalled = true;
        await options.audit.record("moderation.user_message.recalled", subject, { from, to, conversation }, now());
      } catch (error) {
        const detail = isNimError(error) ? { nimKind: error.kind, nimCode: error.code, nimDesc: error.desc } : {};
        options.logger?.warn({ msgidServer: subject, ...detail }, "could not recall a blocked user message");
        await options.audit.record(
          "moderation.user_message.recall_failed",
          subject,
          { from, to, conversation, ...detail },
          now(),
        );
      }
    }

    let notified = false;
    if (options.notice !== "") {
      try {
        await options.nim.sendMessage({
          from: options.noticeFrom,
          to: from,
          type: 0,
          body: { msg: options.notice },
        });
        notified = true;
      } catch (error) {
        const detail = isNimError(error) ? { nimKind: error.kind, nimCode: error.code } : {};
        options.logger?.warn({ msgidServer: subject, ...detail }, "could not send the moderation notice");
      }
    }
    return { kind: "blocked", recalled, notified };
  }

  return {
    consider(event) {
      const work = check(event)
        .catch((error: unknown) => {
          options.logger?.error({ err: error, msgidServer: event.msgidServer }, "user message moderation failed");
        })
        .finally(() => pending.delete(work));
      pending.add(work);
    },
    check,
    async idle() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
  };
}
