/**
 * The documented estimate of tokens when a generator reports none (the `http` and `demo`
 * generators, or an OpenAI-compatible server that ignores `stream_options.include_usage`).
 *
 * BPE tokenizers of current models (cl100k/o200k, Qwen, DeepSeek) spend about one token per Han
 * character, kana or hangul syllable, and about one token per four characters of English or code.
 * So: each CJK character counts 1, every other run of characters counts 1 per 4 (rounded up), and
 * a chat message costs 4 more for its role framing. Good to a factor of about 1.3 either way:
 * enough for budgets and cost trends, and rows keep `estimated = 1` so a page can say so.
 *
 * @module
 */

/** Han, kana, hangul, CJK punctuation and full-width forms: about one token each. */
const WIDE = /[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]/u;

/** Framing tokens per chat message (role and separators), as OpenAI's cookbook counts them. */
export const MESSAGE_OVERHEAD_TOKENS = 4;

export function estimateTokens(text: string): number {
  let wide = 0;
  let narrow = 0;
  for (const character of text) {
    if (WIDE.test(character)) wide += 1;
    else narrow += 1;
  }
  return wide + Math.ceil(narrow / 4);
}

/** The prompt of one chat request: system prompt, history turns and the message, each framed. */
export function estimatePromptTokens(parts: readonly string[]): number {
  return parts.reduce((sum, part) => sum + estimateTokens(part) + MESSAGE_OVERHEAD_TOKENS, 0);
}
