import { describe, expect, it, vi } from "vitest";
import {
  apologyText,
  blockedText,
  DEFAULT_PUSH_CONTENT,
  encodedLength,
  FINAL_OPTION,
  FINAL_PART_OPTION,
  type FinalBody,
  finalBodies,
  limitedText,
  limitedTextWithRetryAfter,
  maxDeltaBudget,
  NIM_BODY_LIMIT,
  NIM_PUSHCONTENT_LIMIT,
  pushContent,
  type ReplyStatus,
  resetConfirmationText,
  SEGMENT_OPTION,
  segmentBody,
} from "./messages.ts";
import { encodedTextLength, graphemeClusters } from "./text-units.ts";

const STREAM = "stream-0123456789abcdef";
const REPLY_TO = "1234567890123456789";

function clusterBoundaries(text: string): Set<number> {
  const boundaries = new Set<number>([text.length]);
  for (const { index } of graphemeClusters(text)) boundaries.add(index);
  return boundaries;
}

/** Every invariant of the contract's final parts. */
function checkFinalBodies(bodies: FinalBody[], text: string, firstSeq: number, status: ReplyStatus): void {
  expect(bodies.map((body) => body.text).join("")).toBe(text);
  const boundaries = clusterBoundaries(text);
  let offset = 0;
  bodies.forEach((body, index) => {
    expect(encodedLength(body)).toBeLessThanOrEqual(NIM_BODY_LIMIT);
    expect(body.kind).toBe("bot_stream");
    expect(body.stream_id).toBe(STREAM);
    expect(body.reply_to).toBe(REPLY_TO);
    expect(body.seq).toBe(firstSeq + index);
    expect(body.delta).toBe("");
    expect(body.status).toBe(status);
    expect(body.done).toBe(index === bodies.length - 1);
    offset += body.text.length;
    expect(boundaries.has(offset), `part ${index + 1} ends inside a grapheme cluster`).toBe(true);
    if (bodies.length > 1) {
      expect(body.part).toBe(index + 1);
      expect(body.parts).toBe(bodies.length);
      expect(body.text.length).toBeGreaterThan(0);
      expect(Object.keys(body)).toEqual([
        "kind",
        "stream_id",
        "reply_to",
        "seq",
        "delta",
        "done",
        "status",
        "part",
        "parts",
        "text",
      ]);
    } else {
      expect(body).not.toHaveProperty("part");
      expect(body).not.toHaveProperty("parts");
    }
  });
  // Greedy: a part other than the last could not have taken the next cluster as well.
  for (let index = 0; index < bodies.length - 1; index += 1) {
    const body = bodies[index]!;
    const following = bodies[index + 1]!.text;
    const nextCluster = graphemeClusters(following)[Symbol.iterator]().next().value!.segment;
    expect(encodedLength(body) + encodedTextLength(nextCluster)).toBeGreaterThan(NIM_BODY_LIMIT);
  }
}

describe("segmentBody", () => {
  it("builds the contract's segment with its key order", () => {
    const body = segmentBody({ streamId: "s1", replyTo: "42", seq: 3, delta: 'He said "hi"\n' });
    expect(JSON.stringify(body)).toBe(
      '{"kind":"bot_stream","stream_id":"s1","reply_to":"42","seq":3,"delta":"He said \\"hi\\"\\n","done":false}',
    );
  });
});

describe("encodedLength", () => {
  it("is the length of the JSON text, as NIM counts the body", () => {
    expect(encodedLength({ a: "你😀\n" })).toBe('{"a":"你😀\\n"}'.length);
    expect(encodedLength({ a: "你😀\n" })).toBe(13);
  });
});

describe("maxDeltaBudget", () => {
  it("is exactly what fills a segment body to NIM's limit", () => {
    for (const seq of [0, 9, 10, 99_999]) {
      const budget = maxDeltaBudget({ streamId: STREAM, replyTo: REPLY_TO, seq });
      const full = segmentBody({ streamId: STREAM, replyTo: REPLY_TO, seq, delta: "x".repeat(budget) });
      expect(encodedLength(full)).toBe(NIM_BODY_LIMIT);
      const over = segmentBody({ streamId: STREAM, replyTo: REPLY_TO, seq, delta: "x".repeat(budget + 1) });
      expect(encodedLength(over)).toBe(NIM_BODY_LIMIT + 1);
    }
  });

  it("shrinks as the seq gains digits", () => {
    const budget = (seq: number) => maxDeltaBudget({ streamId: STREAM, replyTo: REPLY_TO, seq });
    expect(budget(9) - budget(10)).toBe(1);
    expect(budget(0) - budget(999_999)).toBe(5);
  });
});

describe("finalBodies", () => {
  const base = { streamId: STREAM, replyTo: REPLY_TO };

  it("builds one final message with the contract's key order when the reply fits", () => {
    const bodies = finalBodies({ ...base, firstSeq: 7, text: "完整的回答 the whole answer", status: "ok" });
    expect(bodies).toHaveLength(1);
    expect(JSON.stringify(bodies[0])).toBe(
      `{"kind":"bot_stream","stream_id":"${STREAM}","reply_to":"${REPLY_TO}","seq":7,"delta":"","done":true,"status":"ok","text":"完整的回答 the whole answer"}`,
    );
  });

  it("keeps an empty text and any status in one message", () => {
    for (const status of ["ok", "error", "blocked", "limited"] as const) {
      const bodies = finalBodies({ ...base, firstSeq: 0, text: "", status });
      expect(bodies).toEqual([
        { kind: "bot_stream", stream_id: STREAM, reply_to: REPLY_TO, seq: 0, delta: "", done: true, status, text: "" },
      ]);
    }
  });

  it("uses one message up to exactly 5000 characters and parts from 5001", () => {
    const overhead = encodedLength(finalBodies({ ...base, firstSeq: 3, text: "", status: "ok" })[0]);
    const fitting = "字".repeat(NIM_BODY_LIMIT - overhead);
    const single = finalBodies({ ...base, firstSeq: 3, text: fitting, status: "ok" });
    expect(single).toHaveLength(1);
    expect(encodedLength(single[0])).toBe(NIM_BODY_LIMIT);
    const split = finalBodies({ ...base, firstSeq: 3, text: `${fitting}字`, status: "ok" });
    expect(split).toHaveLength(2);
    checkFinalBodies(split, `${fitting}字`, 3, "ok");
  });

  it("splits a long Chinese reply into parts within the limit", () => {
    const text = "这是一个很长的回答，用来测试分片。".repeat(1200); // 20 400 characters
    const bodies = finalBodies({ ...base, firstSeq: 41, text, status: "ok" });
    expect(bodies).toHaveLength(5);
    checkFinalBodies(bodies, text, 41, "ok");
  });

  it("counts escapes in full: newlines, quotes, backslashes and control characters", () => {
    const text = 'line "quoted" \\path\\\n\t\u0001'.repeat(600);
    const bodies = finalBodies({ ...base, firstSeq: 0, text, status: "error" });
    expect(encodedTextLength(text)).toBeGreaterThan(3 * NIM_BODY_LIMIT);
    checkFinalBodies(bodies, text, 0, "error");
    // A naive count of code units would have put this in fewer, oversized parts.
    expect(bodies.length).toBeGreaterThan(Math.ceil(text.length / NIM_BODY_LIMIT));
  });

  it("never splits emoji sequences, flags or surrogate pairs", () => {
    const text = "👨‍👩‍👧‍👦🇨🇳😀a\r\n".repeat(900);
    const bodies = finalBodies({ ...base, firstSeq: 2, text, status: "ok" });
    checkFinalBodies(bodies, text, 2, "ok");
    for (const body of bodies) expect(body.text.isWellFormed()).toBe(true);
  });

  it("stays within the limit where the number of parts gains a digit (9 → 10 parts, seq 99 → 100)", () => {
    for (const length of [44_000, 46_000, 48_000, 50_000]) {
      const text = "x".repeat(length);
      const bodies = finalBodies({ ...base, firstSeq: 92, text, status: "ok" });
      checkFinalBodies(bodies, text, 92, "ok");
    }
  });

  it("finds a consistent split at the exact length where one more part is needed", () => {
    // Search the text length at which the count goes from 9 to 10 parts and check both sides.
    // Control characters cost 6 each (\u0001), which keeps the texts short and the search quick.
    const unit = "\u0001";
    let low = 6_000;
    let high = 9_000;
    const count = (length: number) =>
      finalBodies({ ...base, firstSeq: 0, text: unit.repeat(length), status: "ok" }).length;
    expect(count(low)).toBeLessThanOrEqual(9);
    expect(count(high)).toBeGreaterThanOrEqual(10);
    while (high - low > 1) {
      const middle = Math.floor((low + high) / 2);
      if (count(middle) <= 9) low = middle;
      else high = middle;
    }
    for (const length of [low - 1, low, high, high + 1]) {
      const text = unit.repeat(length);
      checkFinalBodies(finalBodies({ ...base, firstSeq: 0, text, status: "ok" }), text, 0, "ok");
    }
  });

  it("handles a hundred parts and more, seq gaining a digit on the way", () => {
    const text = "\u0001".repeat(84_000); // 504 000 encoded characters
    const bodies = finalBodies({ ...base, firstSeq: 9_990, text, status: "ok" });
    expect(bodies.length).toBeGreaterThanOrEqual(100);
    checkFinalBodies(bodies, text, 9_990, "ok");
  });

  it("refuses ids that leave no room for text", () => {
    expect(() =>
      finalBodies({ streamId: "s".repeat(NIM_BODY_LIMIT), replyTo: REPLY_TO, firstSeq: 0, text: "x", status: "ok" }),
    ).toThrow(RangeError);
  });
});

describe("pushContent", () => {
  it("collapses whitespace and keeps a short answer whole", () => {
    expect(pushContent("  Hello,\n\n  world!\t你好  ")).toBe("Hello, world! 你好");
  });

  it("falls back to a default for an empty or blank answer", () => {
    expect(pushContent("")).toBe(DEFAULT_PUSH_CONTENT);
    expect(pushContent(" \n\t ")).toBe(DEFAULT_PUSH_CONTENT);
    expect(DEFAULT_PUSH_CONTENT.length).toBeLessThanOrEqual(NIM_PUSHCONTENT_LIMIT);
  });

  it("cuts a long answer to 500 characters ending in an ellipsis", () => {
    const result = pushContent("答".repeat(2000));
    expect(result).toHaveLength(NIM_PUSHCONTENT_LIMIT);
    expect(result.endsWith("…")).toBe(true);
    expect(pushContent("a".repeat(NIM_PUSHCONTENT_LIMIT))).toBe("a".repeat(NIM_PUSHCONTENT_LIMIT));
  });

  it("cuts Chinese and English without segmenting, and still never before a combining mark", () => {
    const segment = vi.spyOn(Intl.Segmenter.prototype, "segment");
    try {
      expect(pushContent("答 the answer, ".repeat(100))).toHaveLength(NIM_PUSHCONTENT_LIMIT);
      expect(segment).not.toHaveBeenCalled();
    } finally {
      segment.mockRestore();
    }
    // "e" + U+0301 is one cluster: a cut between them would drop the accent from the preview.
    const accented = `${"a".repeat(498)}e\u0301${"b".repeat(10)}`;
    expect(pushContent(accented)).toBe(`${"a".repeat(498)}…`);
  });

  it("does not split an emoji at the cut", () => {
    for (let prefix = 490; prefix < 500; prefix += 1) {
      const result = pushContent("a".repeat(prefix) + "👨‍👩‍👧‍👦".repeat(10));
      expect(result.length).toBeLessThanOrEqual(NIM_PUSHCONTENT_LIMIT);
      expect(result.isWellFormed()).toBe(true);
      const body = result.slice(prefix, -1);
      expect(body.length % 11).toBe(0); // whole families only
    }
  });

  it("does not end with a space before the ellipsis and honours a smaller maximum", () => {
    expect(pushContent("one two three four", 9)).toBe("one two…");
    expect(pushContent("", 4)).toHaveLength(4);
  });
});

describe("options", () => {
  it("makes segments online-only and invisible to history, push and the callback", () => {
    expect(SEGMENT_OPTION).toEqual({
      roam: false,
      history: false,
      persistent: false,
      push: false,
      badge: false,
      route: false,
      sessionUpdate: false,
    });
    expect(Object.isFrozen(SEGMENT_OPTION)).toBe(true);
  });

  it("makes the final a normal stored message, and earlier final parts silent", () => {
    expect(FINAL_OPTION).toEqual({
      roam: true,
      history: true,
      persistent: true,
      push: true,
      badge: true,
      route: true,
      sessionUpdate: true,
    });
    expect(FINAL_PART_OPTION).toEqual({ ...FINAL_OPTION, push: false, badge: false });
    expect(Object.isFrozen(FINAL_OPTION)).toBe(true);
    expect(Object.isFrozen(FINAL_PART_OPTION)).toBe(true);
  });
});

describe("user-facing texts", () => {
  const chinese = /[\u4e00-\u9fff]/;
  const english = /[A-Za-z]{3,}/;

  it.each(["error", "timeout", "interrupted"] as const)("apologyText(%s) is short and bilingual", (kind) => {
    const text = apologyText(kind);
    expect(text).toMatch(chinese);
    expect(text).toMatch(english);
    expect(text.length).toBeLessThan(200);
  });

  it("gives a different apology per kind", () => {
    expect(new Set([apologyText("error"), apologyText("timeout"), apologyText("interrupted")]).size).toBe(3);
  });

  it.each([
    ["limitedText", limitedText],
    ["blockedText", blockedText],
    ["resetConfirmationText", resetConfirmationText],
  ])("%s is bilingual", (_name, text) => {
    expect(text).toMatch(chinese);
    expect(text).toMatch(english);
  });

  it("limitedTextWithRetryAfter rounds the wait up to whole seconds", () => {
    expect(limitedTextWithRetryAfter(2.1)).toContain("3 秒");
    expect(limitedTextWithRetryAfter(2.1)).toContain("in 3 s");
    expect(limitedTextWithRetryAfter(0)).toContain("in 1 s");
  });
});
