/**
 * Removes `<think>…</think>` reasoning blocks from a streamed answer before anything reaches the
 * user (reasoning models such as DeepSeek-R1 and QwQ stream them inline; chatbot projects keep
 * leaking them, see dify-on-wechat#233 and AstrBot#1096).
 *
 * The filter is a small state machine over the text stream. It never waits for more text than a
 * possible tag needs: outside a block it only holds back a trailing `<`, `<t`, `</thi` … that could
 * still become a tag, and releases it as soon as the next character proves otherwise. Tags match
 * ASCII case-insensitively (`<THINK>`, `<Think>`), and may be split across chunks at any position.
 *
 * Decisions:
 * - Blocks do not nest: the first `</think>` closes the block.
 * - A stray `</think>` outside a block is removed too (some providers drop the opening tag that the
 *   chat template already put in the prompt); the text before it has already been released.
 * - Whitespace right after a removed block (or stray closing tag) is dropped, also when it arrives
 *   in later chunks, because models emit `<think>…</think>\n\nanswer`. Whitespace before a block is
 *   kept, so `a <think>x</think> b` gives `a b`.
 * - A block still open at the end of the stream is dropped whole.
 *
 * Chunking never changes the result: filtering the chunks and concatenating the outputs equals
 * filtering the whole text at once (a property the tests check with random chunkings).
 *
 * @example
 * const filter = createThinkFilter();
 * filter.push("<thi") + filter.push("nk>plan</think>\n\nHello") + filter.flush() // "Hello"
 *
 * @module
 */

const OPENING_TAG = "<think>";
const CLOSING_TAG = "</think>";

export interface ThinkFilter {
  /** Feeds the next chunk; returns the text that can be shown now (possibly ""). */
  push(chunk: string): string;
  /** Ends the stream: releases a held-back non-tag, drops an unclosed block, and resets the filter. */
  flush(): string;
}

export function createThinkFilter(): ThinkFilter {
  /** Text received but not yet decided (a possible partial tag, or the inside of a block). */
  let pending = "";
  let insideBlock = false;
  /** True from the end of a removed block until the first non-whitespace character is released. */
  let trimLeadingWhitespace = false;

  /** Releases `text` from outside a block, applying the whitespace trim after a removed block. */
  function release(text: string): string {
    if (!trimLeadingWhitespace || text.length === 0) return text;
    const trimmed = text.trimStart();
    if (trimmed.length > 0) trimLeadingWhitespace = false;
    return trimmed;
  }

  function process(): string {
    let output = "";
    for (;;) {
      if (insideBlock) {
        const closing = indexOfIgnoringAsciiCase(pending, CLOSING_TAG);
        if (closing === -1) {
          // Everything inside the block is dropped except what could be the start of `</think>`.
          pending = pending.slice(pending.length - partialTagSuffixLength(pending, [CLOSING_TAG]));
          return output;
        }
        pending = pending.slice(closing + CLOSING_TAG.length);
        insideBlock = false;
        trimLeadingWhitespace = true;
        continue;
      }
      const opening = indexOfIgnoringAsciiCase(pending, OPENING_TAG);
      const strayClosing = indexOfIgnoringAsciiCase(pending, CLOSING_TAG);
      if (opening === -1 && strayClosing === -1) {
        const held = partialTagSuffixLength(pending, [OPENING_TAG, CLOSING_TAG]);
        output += release(pending.slice(0, pending.length - held));
        pending = pending.slice(pending.length - held);
        return output;
      }
      if (opening !== -1 && (strayClosing === -1 || opening < strayClosing)) {
        output += release(pending.slice(0, opening));
        pending = pending.slice(opening + OPENING_TAG.length);
        insideBlock = true;
      } else {
        output += release(pending.slice(0, strayClosing));
        pending = pending.slice(strayClosing + CLOSING_TAG.length);
        trimLeadingWhitespace = true;
      }
    }
  }

  return {
    push(chunk: string): string {
      if (chunk.length === 0) return "";
      pending += chunk;
      return process();
    },
    flush(): string {
      // Outside a block, what is still pending is a prefix of a tag that never completed: plain text.
      const output = insideBlock ? "" : release(pending);
      pending = "";
      insideBlock = false;
      trimLeadingWhitespace = false;
      return output;
    },
  };
}

/**
 * Filters a whole text at once (the reference the streaming filter must agree with; handy for
 * stored history that may still contain reasoning).
 */
export function removeThinkBlocks(text: string): string {
  const filter = createThinkFilter();
  return filter.push(text) + filter.flush();
}

/** ASCII-only lower-casing: `toLowerCase` could change lengths (e.g. "İ") and break offsets. */
function asciiLower(codeUnit: number): number {
  return codeUnit >= 0x41 && codeUnit <= 0x5a ? codeUnit + 0x20 : codeUnit;
}

/** `haystack.indexOf(tag)` ignoring ASCII case; `tag` must be lower-case and start with "<". */
function indexOfIgnoringAsciiCase(haystack: string, tag: string): number {
  const last = haystack.length - tag.length;
  let start = haystack.indexOf("<");
  while (start !== -1 && start <= last) {
    if (matchesIgnoringAsciiCase(haystack, start, tag, tag.length)) return start;
    start = haystack.indexOf("<", start + 1);
  }
  return -1;
}

/** Whether `haystack` holds the first `length` characters of `tag` at `start`, ignoring ASCII case. */
function matchesIgnoringAsciiCase(haystack: string, start: number, tag: string, length: number): boolean {
  for (let offset = 0; offset < length; offset += 1) {
    if (asciiLower(haystack.charCodeAt(start + offset)) !== tag.charCodeAt(offset)) return false;
  }
  return true;
}

/** Length of the longest proper suffix of `text` that is a prefix of one of `tags` (ignoring ASCII case). */
function partialTagSuffixLength(text: string, tags: string[]): number {
  const longestTag = Math.max(...tags.map((tag) => tag.length));
  for (let length = Math.min(longestTag - 1, text.length); length > 0; length -= 1) {
    const start = text.length - length;
    const isPrefix = tags.some((tag) => length < tag.length && matchesIgnoringAsciiCase(text, start, tag, length));
    if (isPrefix) return length;
  }
  return 0;
}
