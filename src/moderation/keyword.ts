/**
 * A keyword-list moderator: one term per line in a plain text file the operator edits, reloaded
 * without a restart.
 *
 * File format (UTF-8):
 * - one term per line, matched anywhere in the text (substring: no word boundaries, because
 *   Chinese has none; write a `/regex/` line with `\b` when an English word needs them);
 * - `#` at the start of a line begins a comment; blank lines are ignored;
 * - `/pattern/flags` is a regular expression (flags from `dimsuv`; `g` and `y` are dropped because
 *   they make `test()` stateful, `i` is always added because the whole list is case-insensitive).
 *
 * Matching ignores the tricks that cost a user nothing: letter case, full-width and other
 * compatibility forms (Unicode NFKC: "ＢＡＤ" is "bad"), and whitespace or invisible characters
 * put between the characters of a term ("b a d", "b\u200Bad"). Terms are compiled into one
 * regular expression and the text is normalised once per check, so a check costs one pass over
 * the text whatever the list's length.
 *
 * Reloading polls the file's stat (mtime, size, inode) instead of using fs.watch, which misses
 * or duplicates events with editors that replace the file (vim, sed -i, Kubernetes ConfigMaps).
 * A change is loaded once the stat stayed the same for two polls, so a file caught half-written
 * is not loaded; a file that does not parse keeps the last good list and logs a warning.
 */
import { readFileSync, statSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import type { ModerationContext, ModerationVerdict, Moderator } from "./types.ts";

/** The part of a pino logger this module uses; a pino Logger fits. */
export interface ModerationLogger {
  warn(details: object, message: string): void;
  info(details: object, message: string): void;
}

export interface KeywordModeratorOptions {
  file: string;
  /** How often the file's stat is polled. Default 2000 ms. */
  reloadIntervalMs?: number;
  logger?: ModerationLogger;
}

export interface KeywordModerator extends Moderator {
  /** Reads the file now (no stability wait); false when it did not parse and the old list stays. */
  reload(): Promise<boolean>;
  /** What is loaded, for logs and tests. */
  size(): { terms: number; patterns: number };
  /** Stops polling the file. */
  close(): void;
}

/** A keyword file that cannot be used; names the file and the line. */
export class KeywordListError extends Error {
  override readonly name = "KeywordListError";
}

/** One compiled list. Immutable: a reload swaps the whole object. */
export interface KeywordList {
  /** The plain terms as one alternation over their normalised forms; undefined when there are none. */
  termMatcher: RegExp | undefined;
  /** Normalised form → the term as written in the file, to name it in the verdict's reason. */
  termsByForm: Map<string, string>;
  patterns: RegExp[];
}

const DEFAULT_RELOAD_INTERVAL_MS = 2000;

/**
 * Characters that render as nothing (zero-width space/joiners, word joiner, soft hyphen, BOM,
 * bidirectional controls, Mongolian vowel separator, combining grapheme joiner). They are removed before any matching.
 */
// U+034F COMBINING GRAPHEME JOINER sits outside the class: a class mixing it with other characters reads as a combining sequence.
const INVISIBLE = /[\u00AD\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u206A-\u206F\uFEFF]|\u034F/gu;
const WHITESPACE = /\s+/gu;
/** `/pattern/flags` with only valid flag letters, so a term like "/usr/bin" stays a term. */
const REGEX_LINE = /^\/(.+)\/([dgimsuvy]*)$/s;

/** The text regular-expression lines see: NFKC, invisible characters removed, spaces kept. */
export function visibleForm(text: string): string {
  return text.normalize("NFKC").replace(INVISIBLE, "");
}

/** The text plain terms are matched in: additionally lower-cased with all whitespace removed. */
export function termForm(text: string): string {
  return visibleForm(text).toLowerCase().replace(WHITESPACE, "");
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** Parses a keyword file's text. Throws KeywordListError naming the line of a bad regex. */
export function parseKeywordList(text: string, source = "keyword list"): KeywordList {
  const termsByForm = new Map<string, string>();
  const patterns: RegExp[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  for (const [index, rawLine] of lines.entries()) {
    // trim() also drops a UTF-8 byte-order mark at the start of the file.
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) continue;
    const regexLine = REGEX_LINE.exec(line);
    if (regexLine) {
      const flags = `${(regexLine[2] ?? "").replace(/[gyi]/g, "")}i`;
      try {
        patterns.push(new RegExp(regexLine[1] ?? "", flags));
      } catch (error) {
        throw new KeywordListError(
          `${source} line ${index + 1}: invalid regular expression ${line}: ${(error as Error).message}`,
        );
      }
      continue;
    }
    const form = termForm(line);
    // A line of only invisible characters would compile to an empty alternative matching everything.
    if (form !== "" && !termsByForm.has(form)) termsByForm.set(form, line);
  }
  const forms = [...termsByForm.keys()];
  // Longest first, so the reason names "badword" rather than "bad" when both are listed.
  forms.sort((left, right) => right.length - left.length);
  const termMatcher = forms.length > 0 ? new RegExp(forms.map(escapeRegExp).join("|"), "u") : undefined;
  return { termMatcher, termsByForm, patterns };
}

/** Checks one text against a compiled list. Pure; exported for tests and one-off tools. */
export function matchKeywordList(list: KeywordList, text: string): ModerationVerdict {
  if (list.termMatcher) {
    const match = list.termMatcher.exec(termForm(text));
    if (match) {
      const term = list.termsByForm.get(match[0]) ?? match[0];
      return { allowed: false, reason: `keyword "${term}"`, category: "keyword" };
    }
  }
  if (list.patterns.length > 0) {
    const visible = visibleForm(text);
    for (const pattern of list.patterns) {
      if (pattern.test(visible)) {
        return { allowed: false, reason: `pattern /${pattern.source}/${pattern.flags}`, category: "keyword" };
      }
    }
  }
  return { allowed: true };
}

function signatureOf(stats: { mtimeMs: number; size: number; ino: number }): string {
  return `${stats.mtimeMs}:${stats.size}:${stats.ino}`;
}

/**
 * Loads the file now (a missing or broken file at start throws: that is a configuration error
 * the operator must see) and keeps it current by polling.
 */
export function createKeywordModerator(options: KeywordModeratorOptions): KeywordModerator {
  const { file, logger } = options;
  const intervalMs = options.reloadIntervalMs ?? DEFAULT_RELOAD_INTERVAL_MS;

  let list: KeywordList;
  let loadedSignature: string;
  try {
    // Synchronous on purpose: this runs once at start-up and lets the factory stay synchronous.
    loadedSignature = signatureOf(statSync(file));
    list = parseKeywordList(readFileSync(file, "utf8"), file);
  } catch (error) {
    if (error instanceof KeywordListError) throw error;
    throw new KeywordListError(`cannot read keyword file ${file}: ${(error as Error).message}`);
  }

  /** The signature seen by the previous poll; a change is loaded once it is seen twice in a row. */
  let candidateSignature = loadedSignature;
  /** What last failed (a signature or a stat error), so a broken file is warned about once, not every poll. */
  let failedKey: string | undefined;
  let polling = false;

  async function load(signature: string): Promise<boolean> {
    try {
      const parsed = parseKeywordList(await readFile(file, "utf8"), file);
      list = parsed;
      loadedSignature = signature;
      failedKey = undefined;
      logger?.info(
        { file, terms: parsed.termsByForm.size, patterns: parsed.patterns.length },
        "moderation keyword list reloaded",
      );
      return true;
    } catch (error) {
      if (failedKey !== signature) {
        logger?.warn(
          { file, error: (error as Error).message },
          "keyword list reload failed; keeping the last good list",
        );
      }
      failedKey = signature;
      return false;
    }
  }

  async function poll(): Promise<void> {
    if (polling) return;
    polling = true;
    try {
      const signature = signatureOf(await stat(file));
      const stable = signature === candidateSignature;
      candidateSignature = signature;
      if (!stable || signature === loadedSignature || signature === failedKey) return;
      await load(signature);
    } catch (error) {
      // A missing file (deleted, or between an editor's delete and rename) keeps the last list.
      const key = `stat:${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
      if (failedKey !== key) {
        logger?.warn({ file, error: (error as Error).message }, "keyword file unreadable; keeping the last good list");
      }
      failedKey = key;
      candidateSignature = key;
    } finally {
      polling = false;
    }
  }

  const timer = setInterval(() => void poll(), intervalMs);
  // Polling must never keep the process alive on its own.
  timer.unref();

  const check = async (text: string, _context: ModerationContext): Promise<ModerationVerdict> =>
    matchKeywordList(list, text);

  return {
    checkInput: check,
    checkOutput: check,
    async reload() {
      try {
        return await load(signatureOf(await stat(file)));
      } catch (error) {
        logger?.warn({ file, error: (error as Error).message }, "keyword file unreadable; keeping the last good list");
        return false;
      }
    },
    size: () => ({ terms: list.termsByForm.size, patterns: list.patterns.length }),
    close: () => clearInterval(timer),
  };
}
