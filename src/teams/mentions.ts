/**
 * Who a team message is for, what the model sees of it, and how the bot's answer mentions the
 * asker (contract: "Teams"; nim-protocol.md §10.3). Pure functions, no NIM calls.
 *
 * NIM's 抄送 has **no field that marks an @mention** (`tMembers` is the member list). An @ is
 * visible in two places only:
 * - the message's `ext` (v9 `custom`/`ext`, v10 `serverExtension`), where NIM's UIKit writes
 *   `{"yxAitMsg": {"<accid>": {"text": "@Nick ", "segments": [{"start": 0, "end": 4, "broken": false}]}}}`
 *   (`ait_all` is the @all key). In NIM's Android UIKit (`AitBlock.addSegment`) `end` is the index of
 *   the *last* character of "@Nick", inclusive; other writers differ, so segments are checked
 *   against the text before anything is cut;
 * - the text itself: clients without UIKit just write `@Nick`.
 *
 * Everything here is hostile input: `ext` may be broken JSON, huge, or shaped differently; names and
 * texts may hold any Unicode. Indices are UTF-16 code units, as in JavaScript and Java, which is
 * what UIKit's segments count.
 *
 * @example
 * const bots = registry.summaries();
 * addressedBots({ fromAccount: "u_alice", text: "@顾问 利率是多少？", ext: undefined }, bots); // [顾问]
 * textForBot({ text: "@顾问 利率是多少？" }, bots[0], bots);                                   // "利率是多少？"
 * replyMentionFields({ accid: "u_alice", nick: "Alice" });                                      // forcepushlist, …
 */
import type { BotSummary } from "../bots/types.ts";

/** The @all key of UIKit's `yxAitMsg`: never wakes a bot (a bot is not "everyone"). */
export const AIT_ALL = "ait_all";
/** UIKit's key in `ext`. */
export const AIT_KEY = "yxAitMsg";
/**
 * An `ext` longer than this is not parsed. NIM caps a message's ext far below (1 KB on the server
 * API, a few KB from clients); anything bigger did not come from a well-behaved client.
 */
export const EXT_PARSE_LIMIT = 64 * 1024;
/** At most this many segments are read per mentioned account (one text rarely @s someone twice). */
const SEGMENTS_PER_ACCOUNT_LIMIT = 20;
/** What is shown for the asker in the reply's @ text and push: NIM's nickname limit is 64. */
const NICK_DISPLAY_LIMIT = 32;
/** NIM's limit on `forcepushcontent` is 500 characters; a push line is short anyway. */
const PUSH_CONTENT_LIMIT = 100;

/** The at-signs users type: ASCII and the full-width one a Chinese input method produces. */
const AT_SIGNS = new Set(["@", "＠"]);
/** Characters of an e-mail address's local part: `me@bot` is an address, not a mention. */
const ADDRESS_CHARACTER = /[A-Za-z0-9_.+-]/;
/** Letters and digits that run on in space-separated scripts: `@bob` must not wake `@bo`. */
const WORD_CHARACTER = /[\p{L}\p{N}_]/u;
/** Scripts written without spaces: `@顾问你好` is a mention of 顾问 followed by 你好. */
const UNSPACED_SCRIPT = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u;
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/** The parts of a team message these helpers read (callback/events.ts `MessageEvent` fits). */
export interface TeamText {
  fromAccount: string;
  text: string;
  ext?: string | undefined;
}

/** One `yxAitMsg` entry after validation. */
export interface AitEntry {
  /** UIKit's display text, e.g. "@Nick "; undefined when absent or not a string. */
  text: string | undefined;
  segments: Array<{ start: number; end: number; broken: boolean }>;
}

/** A stretch of the text to cut: `[start, end)`. */
interface Span {
  start: number;
  end: number;
}

/**
 * `yxAitMsg` of an `ext`, keyed by lower-cased accid; an empty map for no ext, broken JSON, a huge
 * ext or any other shape. Malformed entries and segments are dropped, the rest kept.
 */
export function parseAitMessage(ext: string | undefined): Map<string, AitEntry> {
  const entries = new Map<string, AitEntry>();
  if (ext === undefined || ext === "" || ext.length > EXT_PARSE_LIMIT) return entries;
  let parsed: unknown;
  try {
    parsed = JSON.parse(ext);
  } catch {
    return entries;
  }
  if (!isRecord(parsed)) return entries;
  const ait = parsed[AIT_KEY];
  if (!isRecord(ait)) return entries;
  for (const [accid, value] of Object.entries(ait)) {
    if (accid === "" || accid.length > 64) continue;
    const entry: AitEntry = { text: undefined, segments: [] };
    if (isRecord(value)) {
      if (typeof value.text === "string") entry.text = value.text;
      if (Array.isArray(value.segments)) {
        for (const segment of value.segments.slice(0, SEGMENTS_PER_ACCOUNT_LIMIT)) {
          if (!isRecord(segment) || !isIndex(segment.start) || !isIndex(segment.end)) continue;
          if (segment.end < segment.start) continue;
          entry.segments.push({ start: segment.start, end: segment.end, broken: segment.broken === true });
        }
      }
    }
    // A key with a malformed value still says "this account was @-mentioned".
    entries.set(accid.toLowerCase(), entry);
  }
  return entries;
}

/**
 * The bots a team text message addresses, in the order of `bots`: those whose accid is a
 * `yxAitMsg` key, and those whose name follows an `@` in the text. `ait_all` wakes none, and a
 * message from any bot wakes none (bots never answer bots, so two bots cannot loop).
 */
export function addressedBots<Bot extends BotSummary>(message: TeamText, bots: readonly Bot[]): Bot[] {
  if (bots.some((bot) => sameAccid(bot.accid, message.fromAccount))) return [];
  const ait = parseAitMessage(message.ext);
  const named = new Set(mentionsInText(message.text, bots).map((mention) => mention.bot));
  return bots.filter(
    (bot) => bot.accid.toLowerCase() !== AIT_ALL && (ait.has(bot.accid.toLowerCase()) || named.has(bot)),
  );
}

/**
 * The text `bot`'s model sees: every @ of that bot removed (its `yxAitMsg` segments when they check
 * out against the text, and `@` + its name typed in the text), with the space after each, then
 * trimmed. Mentions of other people stay: they are part of what was said.
 */
export function textForBot(
  message: Pick<TeamText, "text" | "ext">,
  bot: BotSummary,
  bots: readonly BotSummary[] = [bot],
): string {
  return textForBots(message, [bot], bots);
}

/**
 * The text without the @ of any of `addressed` (as `textForBot` cuts one bot's). A turn command is
 * read this way: "@顾问 @导师 /stop" is a stop for each of them, where `textForBot` would leave the
 * other bot's @ in front of the command.
 */
export function textForBots(
  message: Pick<TeamText, "text" | "ext">,
  addressed: readonly BotSummary[],
  bots: readonly BotSummary[] = addressed,
): string {
  const text = message.text;
  const spans: Span[] = [];
  const ait = parseAitMessage(message.ext);
  for (const bot of addressed) {
    const entry = ait.get(bot.accid.toLowerCase());
    for (const segment of entry?.segments ?? []) {
      if (segment.broken) continue;
      const span = segmentSpan(text, segment, entry?.text, bot.name);
      if (span) spans.push(span);
    }
  }
  const known = [...bots, ...addressed.filter((bot) => !bots.includes(bot))];
  for (const mention of mentionsInText(text, known)) {
    if (addressed.includes(mention.bot)) spans.push(mention);
  }
  return cutSpans(text, spans).trim();
}

/** The extra `sendMsg` fields of a reply that mentions the asker in a team. */
export interface ReplyMentionFields {
  /** `forcepushlist`: a JSON array with the asker's accid (NIM: at most 100 accounts, else 811). */
  forcepushlist: string;
  /** `forcepushcontent`: the push text the asker's device shows. */
  forcepushcontent: string;
  /**
   * `ext`: `{"yxAitMsg":{"<asker>":{"text":"@Nick ","segments":[{"start":0,"end":<last index of "@Nick">,"broken":false}]}}}`,
   * so UIKit marks the message as an @ of the asker. The segment describes an "@Nick " in front
   * of the reply text: a client of the custom-message stream shows the reply as "@Nick " + text.
   */
  ext: string;
}

export interface ReplyMentionOptions {
  /** The bot's display name, for the default push text. */
  botName?: string;
  /** The push text; default "<bot> 回复了你 / replied to you". Cut to 100 characters. */
  pushContent?: string;
}

/** Mention fields for a reply to `asker` (whose nick comes from the copy's `fromNick`, hostile). */
export function replyMentionFields(
  asker: { accid: string; nick?: string | undefined },
  options: ReplyMentionOptions = {},
): ReplyMentionFields {
  const accid = asker.accid.toLowerCase();
  const nick = displayNick(asker.nick) || accid;
  const mention = `@${nick}`;
  const ext = {
    [AIT_KEY]: { [accid]: { text: `${mention} `, segments: [{ start: 0, end: mention.length - 1, broken: false }] } },
  };
  const push = options.pushContent ?? `${displayNick(options.botName) || "AI"} 回复了你 / replied to you`;
  return {
    forcepushlist: JSON.stringify([accid]),
    forcepushcontent: truncateCodePoints(push.replace(CONTROL_CHARACTERS, " "), PUSH_CONTENT_LIMIT),
    ext: JSON.stringify(ext),
  };
}

/** A nickname fit to show: control characters out, trimmed, at most 32 code points. */
export function displayNick(nick: string | undefined): string {
  if (nick === undefined) return "";
  return truncateCodePoints(
    nick
      .replace(CONTROL_CHARACTERS, "")
      .replace(/[\uD800-\uDFFF]/gu, "")
      .trim(),
    NICK_DISPLAY_LIMIT,
  ).trim();
}

/**
 * Every `@name` of a bot in the text. At one `@` the longest matching name wins, so "@顾问助理"
 * is a mention of 顾问助理, not of 顾问. Names compare case-insensitively, code unit for code unit.
 */
function mentionsInText<Bot extends BotSummary>(text: string, bots: readonly Bot[]): Array<Span & { bot: Bot }> {
  const mentions: Array<Span & { bot: Bot }> = [];
  const candidates = bots.filter((bot) => bot.name !== "").sort((left, right) => right.name.length - left.name.length);
  if (candidates.length === 0) return mentions;
  for (let index = 0; index < text.length; index++) {
    if (!AT_SIGNS.has(text[index]!)) continue;
    if (index > 0 && ADDRESS_CHARACTER.test(text[index - 1]!)) continue;
    const bot = candidates.find((candidate) => nameMatchesAt(text, index + 1, candidate.name));
    if (!bot) continue;
    const end = index + 1 + bot.name.length;
    mentions.push({ start: index, end, bot });
    index = end - 1;
  }
  return mentions;
}

function nameMatchesAt(text: string, start: number, name: string): boolean {
  const slice = text.slice(start, start + name.length);
  if (slice.length !== name.length || slice.toLowerCase() !== name.toLowerCase()) return false;
  const last = name[name.length - 1]!;
  const next = text[start + name.length];
  // A name ending in a letter or digit of a spaced script must end a word: "@bob" is not "@bo".
  if (next !== undefined && WORD_CHARACTER.test(last) && !UNSPACED_SCRIPT.test(last) && WORD_CHARACTER.test(next)) {
    return false;
  }
  return true;
}

/**
 * The stretch a UIKit segment covers, when it checks out: it must start at an `@`; then "@" + the
 * bot's name, or the entry's own text, found there wins; failing both, `end` read as inclusive
 * (NIM's UIKit), bounded so a wild segment cannot swallow the question.
 */
function segmentSpan(
  text: string,
  segment: { start: number; end: number },
  entryText: string | undefined,
  botName: string,
): Span | undefined {
  const { start } = segment;
  if (start >= text.length || !AT_SIGNS.has(text[start]!)) return undefined;
  if (botName !== "" && nameMatchesAt(text, start + 1, botName)) return { start, end: start + 1 + botName.length };
  const display = entryText?.trimEnd();
  if (display && display.length > 1 && text.startsWith(display, start)) return { start, end: start + display.length };
  const end = Math.min(segment.end + 1, text.length);
  if (end - start > 2 + 64) return undefined;
  return { start, end };
}

/** The text without the spans (overlaps merged), each cut taking one following space with it. */
function cutSpans(text: string, spans: Span[]): string {
  if (spans.length === 0) return text;
  const sorted = [...spans].sort((left, right) => left.start - right.start);
  let result = "";
  let position = 0;
  for (const span of sorted) {
    if (span.end <= position) continue;
    result += text.slice(position, Math.max(position, span.start));
    position = Math.max(position, span.end);
    if (/^[ \u00a0\u3000\t]/.test(text.slice(position, position + 1))) position += 1;
  }
  return result + text.slice(position);
}

function truncateCodePoints(value: string, limit: number): string {
  const points = Array.from(value);
  return points.length <= limit ? value : points.slice(0, limit).join("");
}

function sameAccid(left: string, right: string): boolean {
  return left.toLowerCase() === right.toLowerCase();
}

function isIndex(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 1_000_000;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
