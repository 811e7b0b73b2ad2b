/**
 * The `demo` generator: offline, no model. It says plainly that it is a demo, quotes the user's
 * message and how many earlier turns it sees, and streams the answer in word/character pieces at
 * a typing-like pace, so that `npm start` shows the whole streaming path without an API key.
 *
 * The text is a pure function of the message and the history length. That matters beyond tests:
 * after a crash the pipeline runs the generator again and, when the new output starts with what
 * the user already saw, sends only the rest (see createResumeFilter in src/reply/generation.ts).
 *
 * Magic messages, for demos and tests:
 * - the word `long` (any case) or `长文` / `长回复` / `长回答`: an answer of about 6000 Chinese
 *   characters, longer than one NIM message body (5000), so that multi-part finals can be seen;
 * - `/demo-think`: the answer starts with a `<think>…</think>` block, which the pipeline removes;
 * - `/demo-fail`: a few pieces, then a GeneratorError (status 503), to see the `error` ending.
 *
 * @example
 * const generator = createDemoGenerator({ delayMs: 0 });
 */
import { delay, throwIfAborted } from "../abort.ts";
import { type GenerationRequest, GeneratorError, type ReplyGenerator } from "../types.ts";

export interface DemoGeneratorOptions {
  /** Mean pause before each piece, in milliseconds; each pause varies ±40 % around it. Default 50; 0 for tests. */
  delayMs?: number | undefined;
  /**
   * Source of randomness for piece boundaries and pauses, returning [0, 1). The text never depends
   * on it. Default: a generator seeded from the input, so pieces and pauses repeat as well.
   */
  random?: (() => number) | undefined;
}

export const DEFAULT_DEMO_DELAY_MS = 50;
/** How many Han characters the `long` answer has at least. */
export const LONG_ANSWER_HAN_CHARACTERS = 6000;
/** The quote of the user's message is cut to this many characters. */
const QUOTE_LIMIT = 200;

export function createDemoGenerator(options: DemoGeneratorOptions = {}): ReplyGenerator {
  const delayMs = options.delayMs ?? DEFAULT_DEMO_DELAY_MS;
  return {
    name: "demo",
    async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<string> {
      throwIfAborted(signal);
      const random = options.random ?? createSeededRandom(seedOf(request));
      const mode = modeOf(request.message);
      const text = demoAnswer(request);
      // The long answer goes in bigger pieces, words included, so that it streams in about
      // 12 s at the default pace instead of half a minute.
      const pieces =
        mode === "long" ? splitIntoPieces(text, random, [20, 40], false) : splitIntoPieces(text, random, [1, 3]);
      let index = 0;
      for (const piece of pieces) {
        if (delayMs > 0) await delay(delayMs * (0.6 + 0.8 * random()), signal);
        throwIfAborted(signal);
        if (mode === "fail" && index === 3) throw new GeneratorError("demo failure requested by /demo-fail", 503);
        yield piece;
        index += 1;
      }
    },
  };
}

type DemoMode = "normal" | "long" | "think" | "fail";

function modeOf(message: string): DemoMode {
  const command = message.trim().toLowerCase();
  if (command === "/demo-fail") return "fail";
  if (command === "/demo-think") return "think";
  if (/\blong\b/i.test(message) || /长(文|回复|回答)/.test(message)) return "long";
  return "normal";
}

/** The input the output depends on: nothing else (not the user, not the clock). */
function seedOf(request: GenerationRequest): number {
  return hash(`${request.message}\u0000${request.history.length}`);
}

/** The whole answer, a pure function of the message and the history length; exported for tests. */
export function demoAnswer(request: GenerationRequest): string {
  const mode = modeOf(request.message);
  const seed = seedOf(request);
  const turns = request.history.length;
  const characters = [...request.message].length;
  const quoted = quote(request.message);
  const lines = [
    "这是演示回复（demo generator, no LLM configured）。",
    `你说：「${quoted}」`,
    `我能看到之前的 ${turns} 条对话（I can see ${turns} earlier ${turns === 1 ? "turn" : "turns"} in this conversation）。`,
    variantLine(seed, characters, turns),
    "要接入真正的模型，请设置 OPENAI_BASE_URL / OPENAI_API_KEY，或用 GENERATOR_HTTP_URL 接入你自己的后端。",
    "This is a demo reply. Set OPENAI_BASE_URL / OPENAI_API_KEY, or GENERATOR_HTTP_URL for your own back end, to get real answers.",
  ];
  const body = lines.join("\n");
  if (mode === "think") {
    return `<think>\n演示推理（demo reasoning）：用户发来了 ${characters} 个字符，这段思考不应该出现在聊天里。\n</think>\n\n${body}`;
  }
  if (mode === "long") return `${body}\n\n${longText()}`;
  return body;
}

function variantLine(seed: number, characters: number, turns: number): string {
  const variants = [
    `你的消息有 ${characters} 个字符（your message has ${characters} characters）。`,
    `同样的消息总会得到同样的演示回复（the same message always gets the same demo reply）。`,
    turns === 0
      ? "这是我们对话的开始（this is the start of our conversation）。"
      : `发送 /reset 可以清空这 ${turns} 条历史（send /reset to clear this history）。`,
  ];
  return variants[seed % variants.length]!;
}

const LONG_SENTENCES = [
  "这是一段用于测试长回复的演示文字，它会被分成许多片段依次发送给用户。",
  "网易云信的单条消息最多五千个字符，所以完整的回答会拆成几条最终消息。",
  "每个片段都带有连续的序号，客户端按照序号拼接就能得到完整的文本内容。",
  "演示生成器不调用任何大模型，相同的输入总是得到完全相同的输出结果。",
  "如果流式发送在中途出错，最后一条消息仍然会到达，并且带上错误状态。",
  "服务重启以后，已经发出的内容不会重复，新的内容会从断开的地方继续。",
];

/** Numbered paragraphs until at least LONG_ANSWER_HAN_CHARACTERS Han characters. */
function longText(): string {
  const paragraphs: string[] = [];
  let hanCharacters = 0;
  for (let number = 1; hanCharacters < LONG_ANSWER_HAN_CHARACTERS; number += 1) {
    const sentences = [0, 1, 2].map((offset) => LONG_SENTENCES[(number + offset) % LONG_SENTENCES.length]);
    const paragraph = `第${number}段（paragraph ${number}）：${sentences.join("")}`;
    hanCharacters += countHan(paragraph);
    paragraphs.push(paragraph);
  }
  return `${paragraphs.join("\n\n")}\n\n（演示长回复结束 / end of the long demo reply）`;
}

export function countHan(text: string): number {
  return text.match(/\p{Script=Han}/gu)?.length ?? 0;
}

function quote(message: string): string {
  const flat = message.replace(/\s+/g, " ").trim();
  if (flat === "") return "（空消息 / empty message）";
  const characters = [...flat];
  return characters.length > QUOTE_LIMIT ? `${characters.slice(0, QUOTE_LIMIT).join("")}…` : flat;
}

/**
 * Splits like a model streams: a Latin word with its following spaces is one piece (unless
 * `wordsAlone` is false), other text (Chinese, punctuation, line breaks) goes in groups of `size`
 * characters. Code points are never cut, so no piece holds half a surrogate pair.
 */
export function splitIntoPieces(
  text: string,
  random: () => number,
  size: [number, number],
  wordsAlone = true,
): string[] {
  const units = text.match(/[\p{Script=Latin}\p{Number}_'’-]+[ \t]*|[\s\S]/gu) ?? [];
  const pieces: string[] = [];
  let current = "";
  let currentUnits = 0;
  let target = pickSize(random, size);
  for (const unit of units) {
    if (wordsAlone && /^[\p{Script=Latin}\p{Number}]/u.test(unit)) {
      if (current) pieces.push(current);
      pieces.push(unit);
      current = "";
      currentUnits = 0;
      continue;
    }
    current += unit;
    currentUnits += 1;
    if (currentUnits >= target) {
      pieces.push(current);
      current = "";
      currentUnits = 0;
      target = pickSize(random, size);
    }
  }
  if (current) pieces.push(current);
  return pieces;
}

function pickSize(random: () => number, [minimum, maximum]: [number, number]): number {
  return minimum + Math.floor(random() * (maximum - minimum + 1));
}

/** FNV-1a, 32 bits: a stable seed from the input. */
function hash(text: string): number {
  let value = 0x811c9dc5;
  for (let index = 0; index < text.length; index += 1) {
    value ^= text.charCodeAt(index);
    value = Math.imul(value, 0x01000193);
  }
  return value >>> 0;
}

/** mulberry32: small, fast, good enough for pacing. */
function createSeededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}
