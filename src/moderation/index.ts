/**
 * Moderation assembly: builds the configured moderators, chains them, and checks the bot's output
 * in bounded, overlapping windows as it streams. Behaviour and settings: docs/moderation.md.
 */
import { createHttpModerator } from "./http.ts";
import { createKeywordModerator, type ModerationLogger } from "./keyword.ts";
import type { ModerationContext, ModerationVerdict, Moderator } from "./types.ts";

export type { HttpModerationRequest, HttpModeratorOptions } from "./http.ts";
export { createHttpModerator, UNAVAILABLE_REASON } from "./http.ts";
export type { KeywordList, KeywordModerator, KeywordModeratorOptions, ModerationLogger } from "./keyword.ts";
export { createKeywordModerator, KeywordListError, matchKeywordList, parseKeywordList } from "./keyword.ts";
export type { ModerationContext, ModerationVerdict, Moderator } from "./types.ts";

/** The moderation settings the config layer reads (MODERATION_* variables, see docs/moderation.md). */
export interface ModerationSettings {
  /** MODERATION_KEYWORDS_FILE */
  keywordFile?: string | undefined;
  /** MODERATION_HTTP_URL */
  httpUrl?: string | undefined;
  /** MODERATION_HTTP_TIMEOUT_MS, default 2000 */
  httpTimeoutMs: number;
  /** MODERATION_FAIL_OPEN, default false */
  failOpen: boolean;
  httpHeaders?: Record<string, string> | undefined;
  /** How often the keyword file is polled; default 2000 ms. */
  keywordReloadIntervalMs?: number | undefined;
  logger?: ModerationLogger | undefined;
  /** Injectable for tests. */
  fetch?: typeof fetch | undefined;
}

/**
 * Runs the moderators in order and returns the first block, so a cheap local list placed first
 * spares the external service a call for what it already knows. Throws what a moderator throws:
 * the built-in ones never throw (an undecided HTTP check becomes a verdict).
 */
export function combineModerators(list: readonly Moderator[]): Moderator {
  if (list.length === 1 && list[0]) return list[0];
  const run = async (check: (moderator: Moderator) => Promise<ModerationVerdict>): Promise<ModerationVerdict> => {
    for (const moderator of list) {
      const verdict = await check(moderator);
      if (!verdict.allowed) return verdict;
    }
    return { allowed: true };
  };
  return {
    checkInput: (text, context) => run((moderator) => moderator.checkInput(text, context)),
    checkOutput: (window, context) => run((moderator) => moderator.checkOutput(window, context)),
    close: () => {
      for (const moderator of list) moderator.close?.();
    },
  };
}

/**
 * The moderator the settings describe: keyword list first, then the HTTP service. Undefined when
 * neither is configured, so the pipeline skips moderation entirely rather than calling a no-op.
 * Throws KeywordListError when the keyword file is missing or invalid at start.
 */
export function createModerator(settings: ModerationSettings): Moderator | undefined {
  const moderators: Moderator[] = [];
  if (settings.keywordFile) {
    moderators.push(
      createKeywordModerator({
        file: settings.keywordFile,
        ...(settings.keywordReloadIntervalMs !== undefined
          ? { reloadIntervalMs: settings.keywordReloadIntervalMs }
          : {}),
        ...(settings.logger ? { logger: settings.logger } : {}),
      }),
    );
  }
  if (settings.httpUrl) {
    moderators.push(
      createHttpModerator({
        url: settings.httpUrl,
        timeoutMs: settings.httpTimeoutMs,
        failOpen: settings.failOpen,
        ...(settings.httpHeaders ? { headers: settings.httpHeaders } : {}),
        ...(settings.fetch ? { fetch: settings.fetch } : {}),
        ...(settings.logger ? { logger: settings.logger } : {}),
      }),
    );
  }
  return moderators.length > 0 ? combineModerators(moderators) : undefined;
}

/**
 * NIM's own content check marks a copied message with `antispam: "true"` (parsed into a boolean by
 * callback/parse.ts). With MODERATION_RESPECT_NIM_ANTISPAM the pipeline treats that as blocked input.
 */
export function nimAntispamVerdict(antispam: boolean | undefined): ModerationVerdict {
  return antispam ? { allowed: false, reason: "flagged by NIM antispam", category: "nim-antispam" } : { allowed: true };
}

export interface OutputWindowCheckerOptions {
  /** Most new characters (Unicode code points) per checked window. Default 200. */
  windowCharacters?: number;
  /**
   * How much of the previously checked text each window repeats in front, so a term split across
   * two segments is still seen whole. Default 50: longer than any sensible keyword.
   */
  overlapCharacters?: number;
  /** Whose reply this is; passed to every checkOutput call. */
  context?: ModerationContext;
}

export interface OutputWindowChecker {
  /**
   * Checks `newText` (the text about to be sent) together with the tail of what was checked
   * before. A long text is checked in several windows, in order; the first block is returned.
   */
  check(newText: string): Promise<ModerationVerdict>;
}

const DEFAULT_WINDOW_CHARACTERS = 200;
const DEFAULT_OVERLAP_CHARACTERS = 50;

/**
 * One checker per reply. Windows never exceed windowCharacters + overlapCharacters code points,
 * so an external service sees requests of a bounded size however long the answer and however
 * the segmenter coalesces it, and each character is sent for checking about once (plus overlap),
 * not once per segment as re-checking the whole text so far would.
 */
export function createOutputWindowChecker(
  moderator: Moderator,
  options: OutputWindowCheckerOptions = {},
): OutputWindowChecker {
  const windowCharacters = Math.max(1, Math.floor(options.windowCharacters ?? DEFAULT_WINDOW_CHARACTERS));
  const overlapCharacters = Math.max(0, Math.floor(options.overlapCharacters ?? DEFAULT_OVERLAP_CHARACTERS));
  const context = options.context ?? { accid: "" };
  /** The last overlapCharacters code points already handed to the moderator. */
  let tail: string[] = [];

  return {
    async check(newText) {
      // Code points, not UTF-16 units, so a window never splits a surrogate pair (emoji, rare CJK).
      const characters = Array.from(newText);
      const windows: string[] = [];
      // Windows are cut synchronously so that the order of calls, not of their completion,
      // decides what overlaps what.
      for (let start = 0; start < characters.length; start += windowCharacters) {
        const piece = characters.slice(start, start + windowCharacters);
        windows.push(tail.join("") + piece.join(""));
        tail = overlapCharacters > 0 ? [...tail, ...piece].slice(-overlapCharacters) : [];
      }
      for (const window of windows) {
        const verdict = await moderator.checkOutput(window, context);
        if (!verdict.allowed) return verdict;
      }
      return { allowed: true };
    },
  };
}
