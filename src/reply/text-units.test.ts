import { describe, expect, it, vi } from "vitest";
import {
  cutPrefixWithinBudget,
  encodedTextLength,
  graphemeClusters,
  MINIMUM_TEXT_BUDGET,
  splitWithinBudget,
  trailingClusterMayGrow,
} from "./text-units.ts";

const FAMILY = "👨‍👩‍👧‍👦"; // 7 code points, 11 code units
const FLAG_CN = "🇨🇳";
const ZALGO = "a" + "\u0301".repeat(40); // one cluster of 41 code units

function clusterBoundaries(text: string): Set<number> {
  const boundaries = new Set<number>([text.length]);
  for (const { index } of graphemeClusters(text)) boundaries.add(index);
  return boundaries;
}

describe("encodedTextLength", () => {
  it("counts UTF-16 code units of the JSON string without quotes, escapes in full", () => {
    expect(encodedTextLength("")).toBe(0);
    expect(encodedTextLength("abc")).toBe(3);
    expect(encodedTextLength("你好")).toBe(2);
    expect(encodedTextLength("😀")).toBe(2);
    expect(encodedTextLength('"')).toBe(2);
    expect(encodedTextLength("\\")).toBe(2);
    expect(encodedTextLength("\n\r\t")).toBe(6);
    expect(encodedTextLength("\u0001")).toBe(6);
    expect(encodedTextLength("\ud83d")).toBe(6); // a lone surrogate is escaped
    expect(encodedTextLength(FAMILY)).toBe(11);
  });
});

describe("graphemeClusters", () => {
  const direct = new Intl.Segmenter(undefined, { granularity: "grapheme" });
  function reference(text: string): Array<[number, string]> {
    return Array.from(direct.segment(text), ({ index, segment }) => [index, segment] as [number, string]);
  }
  function windowed(text: string): Array<[number, string]> {
    return Array.from(graphemeClusters(text), ({ index, segment }) => [index, segment] as [number, string]);
  }

  it("gives Intl.Segmenter's clusters for short texts", () => {
    for (const text of ["", "a", "你好", FAMILY, `${FLAG_CN}🇺🇸🇨`, "a\r\nb", ZALGO, "\ud83d", "\ude00a"]) {
      expect(windowed(text)).toEqual(reference(text));
    }
  });

  it("gives the same clusters across window edges (emoji, flags, CR LF, surrogates, combining marks)", () => {
    const tails = [
      FAMILY,
      FLAG_CN + "🇺🇸",
      "🇨🇳🇺🇸🇨",
      "\r\n",
      "😀",
      "👍🏽",
      "e\u0301\u0302",
      "क्षि",
      "1️⃣",
      "🏴\u{E0067}\u{E0062}\u{E007F}",
    ];
    // Windows are a few hundred code units: these prefixes put every tail across several edges.
    const prefixes = [...Array.from({ length: 41 }, (_, index) => 240 + index), 510, 511, 766, 1019, 1020, 1021, 1022];
    for (const prefix of prefixes) {
      for (const tail of tails) {
        const text = "a".repeat(prefix) + tail.repeat(3) + "z" + tail;
        expect(windowed(text), `prefix ${prefix} tail ${JSON.stringify(tail)}`).toEqual(reference(text));
      }
    }
  });

  it("widens the window for a cluster longer than it", () => {
    const text = `x${"a" + "\u0301".repeat(3000)}y${"b" + "\u0302".repeat(1023)}`;
    expect(windowed(text)).toEqual(reference(text));
    expect(windowed(text)).toHaveLength(4);
  });

  it("matches on a long mixed text", () => {
    const text = `这是回答😀${FAMILY}\r\n${FLAG_CN}🇺🇸🇨 "q"\n${ZALGO}`.repeat(150);
    expect(text.length).toBeGreaterThan(10_000);
    expect(windowed(text)).toEqual(reference(text));
  });

  it("stays fast on a long text (V8 iterates a long input in quadratic time)", () => {
    const text = "长".repeat(400_000);
    const started = performance.now();
    let count = 0;
    for (const _cluster of graphemeClusters(text)) count += 1;
    expect(count).toBe(400_000);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe("cutPrefixWithinBudget", () => {
  it("takes the whole text when it fits and reports where its last cluster starts", () => {
    expect(cutPrefixWithinBudget("ab你", 10)).toEqual({ end: 3, cost: 3, lastClusterStart: 2 });
    expect(cutPrefixWithinBudget(`x${FAMILY}`, 12)).toEqual({ end: 12, cost: 12, lastClusterStart: 1 });
  });

  it("reports no last cluster for an empty text", () => {
    expect(cutPrefixWithinBudget("", 10)).toEqual({ end: 0, cost: 0, lastClusterStart: undefined });
  });

  it("cuts at the last cluster boundary within the budget, counting escapes", () => {
    const text = 'abc"d\ne';
    // a b c (3) + " (2) = 5; + d = 6; + \n (2) = 8; + e = 9
    expect(cutPrefixWithinBudget(text, 6)).toEqual({ end: 5, cost: 6, lastClusterStart: undefined });
    expect(cutPrefixWithinBudget(text, 7)).toEqual({ end: 5, cost: 6, lastClusterStart: undefined });
    expect(cutPrefixWithinBudget(text, 8)).toEqual({ end: 6, cost: 8, lastClusterStart: undefined });
    expect(cutPrefixWithinBudget("\u0001\u0002", 6)).toEqual({ end: 1, cost: 6, lastClusterStart: undefined });
  });

  it("never splits an emoji sequence, a flag or a CR LF pair", () => {
    expect(cutPrefixWithinBudget(`abcd${FAMILY}`, 14).end).toBe(4);
    expect(cutPrefixWithinBudget(`abc${FLAG_CN}🇺🇸`, 9).end).toBe(7);
    expect(cutPrefixWithinBudget("abcde\r\nf", 8).end).toBe(5);
  });

  it("splits an oversized single cluster between code points, never inside a surrogate pair", () => {
    const cut = cutPrefixWithinBudget(ZALGO, 10);
    expect(cut.end).toBe(10);
    const emojiWithMarks = "😀" + "\u0301".repeat(20);
    expect(cutPrefixWithinBudget(emojiWithMarks, MINIMUM_TEXT_BUDGET).end).toBe(6);
    const family = cutPrefixWithinBudget(FAMILY, 6);
    // 👨 ZWJ 👩 ZWJ = 6 code units; cut between code points only because the cluster alone is too big.
    expect(family.end).toBe(6);
  });

  it("rejects a budget that cannot hold one code point", () => {
    expect(() => cutPrefixWithinBudget("a", 5)).toThrow(RangeError);
    expect(() => cutPrefixWithinBudget("a", Number.NaN)).toThrow(RangeError);
  });
});

describe("splitWithinBudget", () => {
  it("splits into pieces within the budget that concatenate exactly, at cluster boundaries", () => {
    const text = `第一段："引号"\n${FAMILY}${FLAG_CN}\u0001末尾${ZALGO}🇺🇸`.repeat(20);
    const boundaries = clusterBoundaries(text);
    for (const budget of [6, 7, 11, 13, 50, 1000]) {
      const pieces = splitWithinBudget(text, () => budget);
      expect(pieces.join("")).toBe(text);
      let offset = 0;
      for (const piece of pieces) {
        expect(piece.length).toBeGreaterThan(0);
        expect(encodedTextLength(piece)).toBeLessThanOrEqual(budget);
        offset += piece.length;
        // The zalgo cluster (cost 41) may be cut between code points when the budget is smaller.
        if (budget >= 41) expect(boundaries.has(offset), `budget ${budget} offset ${offset}`).toBe(true);
      }
    }
  });

  it("asks for the budget of each piece by index", () => {
    const seen: number[] = [];
    const pieces = splitWithinBudget("abcdefghij", (index) => {
      seen.push(index);
      return index === 0 ? 6 : 10;
    });
    expect(pieces).toEqual(["abcdef", "ghij"]);
    expect(seen).toEqual([0, 1]);
  });

  it("gives no pieces for an empty text", () => {
    expect(splitWithinBudget("", () => 10)).toEqual([]);
  });
});

describe("trailingClusterMayGrow", () => {
  it.each([
    ["", false],
    ["a", false],
    ["Z", false],
    [".", false],
    [" ", false],
    ["\n", false],
    ["é", false],
    ["ß", false],
    ["Ω", false],
    ["Ж", false],
    ["—", false],
    ["…", false],
    ["你", false],
    ["。", false],
    ["，", false],
    ["「", false],
    ["の", false],
    ["カ", false],
    ["한", false],
    ["𠀀", false],
    ["ｱ", false],
    ["\r", true], // CR LF is one cluster
    ["7", true], // keycap 7️⃣
    ["#", true],
    ["*", true],
    ["\ud83d", true], // lone high surrogate
    ["😀", true], // may take a skin tone, VS16 or ZWJ
    ["👍🏽", true], // may take a ZWJ
    ["❤️", true], // variation selector, may take a ZWJ
    ["👨‍", true], // ends with ZWJ
    ["🇨", true], // half a flag
    [FLAG_CN, true], // conservative: any regional indicator
    ["🏴\u{E0067}", true], // inside a tag sequence
    ["©", true],
    ["‼", true],
    ["〽", true],
    ["\u200d", true],
    ["e\u0301", true], // combining mark
    ["क", true], // Devanagari: vowel signs and viramas come as separate tokens
    ["ก", true], // Thai
    ["ب", true], // Arabic
    ["か\u3099", true],
  ])("%j → %s", (cluster, expected) => {
    expect(trailingClusterMayGrow(cluster)).toBe(expected);
  });
});

describe("cutPrefixWithinBudget on long buffers that fit", () => {
  it("finds the same last cluster as segmenting the whole text", () => {
    const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });
    const endings = ["a", "你", "👨‍👩‍👧", "🇨🇳", "e\u0301", "1️⃣", "\r\n", "👍🏽"];
    for (const ending of endings) {
      for (const length of [10, 63, 64, 65, 200, 5000]) {
        const text = "段落".repeat(length).slice(0, length) + ending;
        const segments = [...segmenter.segment(text)];
        const expected = segments[segments.length - 1]!.index;
        const cut = cutPrefixWithinBudget(text, 1_000_000);
        expect(cut).toEqual({ end: text.length, cost: JSON.stringify(text).length - 2, lastClusterStart: expected });
      }
    }
  });
});

describe("cutPrefixWithinBudget on a long backlog", () => {
  it("encodes work in proportion to the budget, not to the backlog", () => {
    const backlog = "流式回答".repeat(250_000);
    const encode = vi.spyOn(JSON, "stringify");
    try {
      const cut = cutPrefixWithinBudget(backlog, 4_900);
      expect(cut.end).toBe(4_900);
      const encodedCharacters = encode.mock.calls.reduce(
        (total, [value]) => total + (typeof value === "string" ? value.length : 0),
        0,
      );
      expect(encodedCharacters).toBeLessThan(10 * 4_900);
    } finally {
      encode.mockRestore();
    }
  });
});

describe("cutPrefixWithinBudget on Chinese and English text", () => {
  const alphabet = ["a", "Z", "7", " ", '"', "\\", "\n", "\t", "你", "好", "。", "，", "「", "！", "〰", "?"];
  const reference = (text: string, budget: number) => {
    let cost = 0;
    let lastClusterStart: number | undefined;
    for (const { segment, index } of graphemeClusters(text)) {
      const segmentCost = encodedTextLength(segment);
      if (cost + segmentCost > budget) return { end: index, cost, lastClusterStart: undefined };
      cost += segmentCost;
      lastClusterStart = index;
    }
    return { end: text.length, cost, lastClusterStart };
  };

  it("cuts exactly where a grapheme walk would", () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 500; round += 1) {
      const length = Math.floor(random() * 120);
      const text = Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join("");
      const budget = 6 + Math.floor(random() * 100);
      expect(cutPrefixWithinBudget(text, budget)).toEqual(reference(text, budget));
    }
  });

  it("needs no Intl.Segmenter for it", () => {
    const segment = vi.spyOn(Intl.Segmenter.prototype, "segment");
    try {
      cutPrefixWithinBudget('你好, "world"\n'.repeat(40), 300);
      cutPrefixWithinBudget("short answer。", 300);
      expect(segment).not.toHaveBeenCalled();
    } finally {
      segment.mockRestore();
    }
  });
});
