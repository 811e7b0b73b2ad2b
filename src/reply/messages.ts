/**
 * The bodies, options and texts of the streamed reply (contract: "The streamed reply").
 *
 * Every message is a NIM custom message (type 100) from the bot to the user whose `body` is one of
 * the objects built here. NIM refuses a `body` longer than 5000 characters, counted as a Java
 * String counts them: UTF-16 code units of the JSON text, escapes (`\n`, `\"`, `\u0001`) in full.
 * `encodedLength` measures exactly that, provided the sender encodes the body with JSON.stringify.
 *
 * @module
 */
import type { BotStreamBody } from "../client/bot-stream-body.ts";
import { NIM_BODY_LIMIT, NIM_PUSHCONTENT_LIMIT, type NimMessageOption } from "../nim/types.ts";
import { cutPrefixWithinBudget, graphemeClusters, isSingleUnitText, MINIMUM_TEXT_BUDGET } from "./text-units.ts";

/** How a reply ended (the final message's `status`); one definition for every transport. */
export type { ReplyStatus } from "./transport/types.ts";
export { NIM_BODY_LIMIT, NIM_PUSHCONTENT_LIMIT };

import type { ReplyStatus } from "./transport/types.ts";

/**
 * A streamed piece of the answer: the wire shape is defined once, in the browser-safe client module
 * (`BotStreamBody`), and narrowed here. Key order is the contract's (the builders below fix it).
 */
export type SegmentBody = Required<Pick<BotStreamBody, "kind" | "stream_id" | "reply_to" | "seq" | "delta">> & {
  done: false;
};

/**
 * The final message, or one final part of a long reply. `part`/`parts` are present only when the
 * reply is split; then only the last part has `done: true`.
 */
export type FinalBody = Required<Pick<BotStreamBody, "kind" | "stream_id" | "reply_to" | "seq" | "done" | "text">> &
  Pick<BotStreamBody, "part" | "parts"> & { delta: ""; status: ReplyStatus };

export interface SegmentBodyInput {
  streamId: string;
  /** The user's message being answered (its msgidServer). */
  replyTo: string;
  seq: number;
  delta: string;
}

export interface FinalBodiesInput {
  streamId: string;
  replyTo: string;
  /** The seq of the (first) final message: the number of segments sent before it. */
  firstSeq: number;
  /** The whole reply. */
  text: string;
  status: ReplyStatus;
}

/** Characters of `body` as NIM counts them: the length of its JSON text. */
export function encodedLength(body: unknown): number {
  return JSON.stringify(body).length;
}

/**
 * A segment body, `done: false`.
 *
 * @example segmentBody({ streamId: "s1", replyTo: "42", seq: 0, delta: "Hel" })
 * // {"kind":"bot_stream","stream_id":"s1","reply_to":"42","seq":0,"delta":"Hel","done":false}
 */
export function segmentBody({ streamId, replyTo, seq, delta }: SegmentBodyInput): SegmentBody {
  return { kind: "bot_stream", stream_id: streamId, reply_to: replyTo, seq, delta, done: false };
}

/**
 * How many encoded characters (see text-units.ts `encodedTextLength`) the `delta` of the segment
 * with this `seq` may take so that its body stays within NIM's 5000 characters. Only the digits of
 * `seq` vary between segments of a stream: pass the seq about to be sent, or an upper bound
 * (say 999_999) for one budget valid for the whole stream.
 */
export function maxDeltaBudget({ streamId, replyTo, seq }: Omit<SegmentBodyInput, "delta">): number {
  return NIM_BODY_LIMIT - encodedLength(segmentBody({ streamId, replyTo, seq, delta: "" }));
}

/**
 * The final message(s) of a reply.
 *
 * One `{…, seq: firstSeq, delta: "", done: true, status, text}` when it fits in NIM's 5000
 * characters. Otherwise n parts `{…, seq, delta: "", done, status, part, parts, text}` (part is
 * 1-based; `part`/`parts` come before `text` so the long field is last) with seq firstSeq …
 * firstSeq + n − 1, `done` true only on the last, each within 5000 characters, the texts cut at
 * grapheme-cluster boundaries and concatenating exactly to `text`.
 *
 * The size of each part depends on n itself (the digits of `parts`, and of `part` and `seq`), so
 * the split is computed for an assumed n and redone with the count it produced until it is
 * consistent. A split made for a larger n also fits a smaller n (fewer digits), so the loop only
 * ever grows n and ends after a step or two.
 *
 * @throws RangeError when `streamId`/`replyTo` alone leave no room for text (a caller bug).
 */
export function finalBodies({ streamId, replyTo, firstSeq, text, status }: FinalBodiesInput): FinalBody[] {
  const single: FinalBody = {
    kind: "bot_stream",
    stream_id: streamId,
    reply_to: replyTo,
    seq: firstSeq,
    delta: "",
    done: true,
    status,
    text,
  };
  if (encodedLength(single) <= NIM_BODY_LIMIT) return [single];

  const partBody = (index: number, parts: number, done: boolean, slice: string): FinalBody => ({
    kind: "bot_stream",
    stream_id: streamId,
    reply_to: replyTo,
    seq: firstSeq + index,
    delta: "",
    done,
    status,
    part: index + 1,
    parts,
    text: slice,
  });

  // A first guess from the raw size keeps the loop short for very long replies.
  let assumedParts = Math.max(2, Math.ceil(encodedLength(single) / NIM_BODY_LIMIT));
  for (;;) {
    const slices: string[] = [];
    let rest = text;
    while (rest.length > 0) {
      // Sized with done:false, which is one character longer than done:true.
      const budget = NIM_BODY_LIMIT - encodedLength(partBody(slices.length, assumedParts, false, ""));
      if (budget < MINIMUM_TEXT_BUDGET) {
        throw new RangeError(`stream_id and reply_to leave no room for text in a ${NIM_BODY_LIMIT}-character body`);
      }
      const { end } = cutPrefixWithinBudget(rest, budget);
      slices.push(rest.slice(0, end));
      rest = rest.slice(end);
    }
    if (slices.length <= assumedParts) {
      const bodies = slices.map((slice, index) => partBody(index, slices.length, index === slices.length - 1, slice));
      for (const body of bodies) {
        // Cannot happen (see above); a guard so a mistake surfaces here and not as NIM error 414.
        if (encodedLength(body) > NIM_BODY_LIMIT) throw new Error("final part exceeds NIM's body limit");
      }
      return bodies;
    }
    assumedParts = slices.length;
  }
}

/** pushcontent for an empty reply, so the notification never falls back to NIM's generic text. */
export const DEFAULT_PUSH_CONTENT = "[新回复] New reply";

/**
 * The notification text of the final message: the start of the answer with every run of whitespace
 * collapsed to one space, at most `maxLength` (NIM: 500) characters, cut at a grapheme-cluster
 * boundary and ending in "…" when shortened. Without a pushcontent NIM would show a generic
 * "custom message" notice for a type-100 message.
 */
export function pushContent(text: string, maxLength: number = NIM_PUSHCONTENT_LIMIT): string {
  const collapsed = text.replace(/\s+/g, " ").trim();
  if (collapsed.length === 0) return DEFAULT_PUSH_CONTENT.slice(0, maxLength);
  if (collapsed.length <= maxLength) return collapsed;
  const ellipsis = "…";
  const keep = maxLength - ellipsis.length;
  // Chinese and English: every unit is a cluster, the one after the cut included, so the cut is a
  // cluster boundary without segmenting (final messages are built for every reply).
  if (isSingleUnitText(collapsed.slice(0, keep + 1))) return collapsed.slice(0, keep).trimEnd() + ellipsis;
  let end = 0;
  for (const { segment, index } of graphemeClusters(collapsed)) {
    if (index + segment.length > keep) break;
    end = index + segment.length;
  }
  return collapsed.slice(0, end).trimEnd() + ellipsis;
}

/**
 * Segments are online-only and leave no trace: not roamed, not in history, not kept for offline
 * users, no push or badge, not copied back to our callback (route), and they do not update the
 * conversation list (sessionUpdate). The final message carries the whole text for everyone else.
 */
export const SEGMENT_OPTION: Readonly<NimMessageOption> = Object.freeze({
  roam: false,
  history: false,
  persistent: false,
  push: false,
  badge: false,
  route: false,
  sessionUpdate: false,
});

/**
 * The final message (or the last final part) is a normal stored message: NIM's defaults, written
 * out so nobody has to remember them. `route` stays true: NIM copies it to the callback like any
 * message, which lets a site archive complete answers from its own 抄送; im-bridge ignores
 * messages from the bot account, so the copy costs one ignored request.
 */
export const FINAL_OPTION: Readonly<NimMessageOption> = Object.freeze({
  roam: true,
  history: true,
  persistent: true,
  push: true,
  badge: true,
  route: true,
  sessionUpdate: true,
});

/**
 * Final parts before the last one: stored like the final (history and offline users need every
 * part) but without push and unread badge, so a long reply notifies and counts once, on its last
 * part.
 */
export const FINAL_PART_OPTION: Readonly<NimMessageOption> = Object.freeze({
  ...FINAL_OPTION,
  push: false,
  badge: false,
});

/** Why a reply has no (complete) answer. */
export type ApologyKind = "error" | "timeout" | "interrupted";

const APOLOGY_TEXTS: Record<ApologyKind, string> = {
  error: "抱歉，生成回答时出错了，请稍后再试。\nSorry, something went wrong while answering. Please try again later.",
  timeout: "抱歉，回答超时了，请稍后再试。\nSorry, the answer took too long. Please try again later.",
  interrupted: "抱歉，回答被中断了，请重新提问。\nSorry, the answer was interrupted. Please ask again.",
};

/** A short bilingual (Chinese, then English) apology for a reply that failed. */
export function apologyText(kind: ApologyKind): string {
  return APOLOGY_TEXTS[kind];
}

/** The reply to a user over their rate limit or quota (status `limited`). */
export const limitedText = "你发送得太频繁了，请稍后再试。\nYou are sending messages too fast. Please try again later.";

/** limitedText with the wait from Retry-After, rounded up to whole seconds (at least 1). */
export function limitedTextWithRetryAfter(retryAfterSeconds: number): string {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  return `你发送得太频繁了，请 ${seconds} 秒后再试。\nYou are sending messages too fast. Please try again in ${seconds} s.`;
}

/** The reply when moderation refused the question or the answer (status `blocked`). */
export const blockedText = "抱歉，这个问题我无法回答。\nSorry, I can't help with that.";

/** The confirmation of `/reset` (or `重置`). */
export const resetConfirmationText = "好的，我们重新开始吧。\nOK, let's start over: the conversation has been cleared.";

/** The answer to /stop when no reply of that conversation was running. */
export const nothingToStopText = "现在没有正在生成的回复。\nThere is no reply in progress to stop.";

/** The answer to an attachment the bridge could not read at all (no usable URL or fields). */
export const unreadableMediaText =
  "抱歉，我打不开这个附件。请用文字描述一下。\nSorry, I could not open that attachment. Please describe it in text.";
