/**
 * The durable reply plan: what a reply will be, decided once and committed on the reply row before
 * anything is sent. A reply resumed after a crash or a lease takeover follows its plan and never
 * decides again, so a refused message is never answered after all, limits are not charged twice,
 * and a command's confirmation is not sent twice.
 *
 * @module
 */
import type { ReplyStatus } from "./transport/types.ts";

export type ReplyPlan =
  /**
   * Ask the generator and stream its answer. With REPLY_DEBOUNCE_MS a burst of messages is one
   * turn: `text` is their texts joined, `merged` the later messages it answers too.
   */
  | {
      action: "answer";
      text?: string;
      merged?: string[];
      /** Non-text messages: the reply starts with this (what an uncertain transcript was heard as). */
      prefix?: string;
      /** A picture for a vision model: its content parts are prepared again when generating. */
      vision?: boolean;
    }
  /** Send this text as the whole reply with this status (refusals, notes, limits). */
  | { action: "say"; status: ReplyStatus; text: string }
  /** Clear the conversation's context, then confirm with this text. */
  | { action: "reset"; text: string }
  /** Send nothing at all (a message recalled before it was answered, a /stop that stopped a reply). */
  | { action: "skip"; reason: string };

export function serializePlan(plan: ReplyPlan): string {
  return JSON.stringify(plan);
}

/**
 * Reads a committed plan. A reply row of the first version has none: it was admitted when its
 * first segment went out, so it is an answer.
 */
export function parsePlan(stored: string | null): ReplyPlan {
  if (!stored) return { action: "answer" };
  const value = JSON.parse(stored) as ReplyPlan;
  switch (value.action) {
    case "answer":
    case "say":
    case "reset":
    case "skip":
      return value;
    default:
      throw new Error(`unknown reply plan ${JSON.stringify(stored)}`);
  }
}
