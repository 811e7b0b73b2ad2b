/**
 * The moderation interface the reply pipeline talks to. Imports no implementation, so the
 * pipeline depends on this file only and the keyword list, an HTTP hook or a test double can stand
 * behind it.
 */

/** Who the text belongs to; an external service may keep per-user state or audit by it. */
export interface ModerationContext {
  accid: string;
}

/**
 * `reason` is for logs and audit rows, not for the user (it may name the matched term);
 * `category` is a short machine-readable tag ("keyword", "regex", "unavailable", or the
 * external service's own).
 */
export type ModerationVerdict = { allowed: true } | { allowed: false; reason: string; category?: string };

export interface Moderator {
  /** The user's message, before any generation. A block means the generator is never called. */
  checkInput(text: string, context: ModerationContext): Promise<ModerationVerdict>;
  /**
   * A window of the bot's output (new text plus an overlap with what was checked before, see
   * `createOutputWindowChecker`), before it is sent. A block means that window is never sent.
   */
  checkOutput(window: string, context: ModerationContext): Promise<ModerationVerdict>;
  /** Releases timers and watchers; optional because most moderators hold none. */
  close?(): void;
}
