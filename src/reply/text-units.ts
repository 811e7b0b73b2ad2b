/**
 * Text measuring and cutting shared by the segmenter and the final-message builder.
 *
 * NIM counts a message `body` in characters of the JSON text it receives, as a Java String does:
 * UTF-16 code units after JSON encoding. So a Chinese character costs 1, an emoji 2 (a surrogate
 * pair), and escapes cost in full: `\n` and `\"` cost 2, a control character `\u0001` costs 6.
 * `JSON.stringify(text).length - 2` (minus the quotes) is exactly that cost, and because
 * JSON.stringify escapes code unit by code unit (lone surrogates as `\udXXX`, never a valid pair),
 * the cost of a concatenation is the sum of the costs of its pieces when they are cut between
 * code points. Every cut below is at a grapheme-cluster boundary (so also between code points),
 * which is what makes per-piece budgeting exact.
 *
 * @module
 */

/** One segmenter for the process: Intl.Segmenter is stateless per call and costly to create. */
const graphemeSegmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** The smallest budget that always fits one code point (a lone surrogate or control escape `\uXXXX`). */
export const MINIMUM_TEXT_BUDGET = 6;

/**
 * How many characters `text` takes inside a JSON string as NIM counts them (without the quotes).
 *
 * @example encodedTextLength('a"\n你😀') // 1 + 2 + 2 + 1 + 2 = 8
 */
export function encodedTextLength(text: string): number {
  return JSON.stringify(text).length - 2;
}

/**
 * How much text is handed to Intl.Segmenter at once. V8's segment iterator (Node 20) costs time
 * proportional to the length of the whole input on every step, so iterating a 100 000-character
 * reply directly is quadratic (minutes); windows of this size keep it linear.
 */
const SEGMENTER_WINDOW = 256;

/** One grapheme cluster and its start offset in the text (UTF-16 code units). */
export interface GraphemeCluster {
  segment: string;
  index: number;
}

/**
 * The grapheme clusters of `text`, lazily, in order.
 *
 * The text is segmented window by window. The last cluster of a window may be cut short by the
 * window's end, so it is not yielded; the next window starts at its start, which is a true
 * boundary: UAX #29 decides a boundary from what precedes it and the one code point after it, so a
 * boundary followed by a complete code point inside the window is final, and segmenting afresh from
 * a boundary gives the same boundaries as segmenting from the start. A window never ends between
 * the halves of a surrogate pair, and a window holding a single (huge) cluster is widened.
 */
export function* graphemeClusters(text: string): Generator<GraphemeCluster, void, undefined> {
  let start = 0;
  let windowLength = SEGMENTER_WINDOW;
  while (start < text.length) {
    let end = Math.min(text.length, start + windowLength);
    if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end += 1;
    const reachesEnd = end === text.length;
    let previous: GraphemeCluster | undefined;
    let yielded = 0;
    for (const { segment, index } of graphemeSegmenter.segment(text.slice(start, end))) {
      if (previous) {
        yield previous;
        yielded += 1;
      }
      previous = { segment, index: start + index };
    }
    if (reachesEnd) {
      if (previous) yield previous;
      return;
    }
    if (yielded === 0) {
      windowLength *= 2;
    } else {
      start = previous!.index;
      windowLength = SEGMENTER_WINDOW;
    }
  }
}

/** Whether a UTF-16 code unit is the first half of a surrogate pair. */
export function isHighSurrogate(codeUnit: number): boolean {
  return codeUnit >= 0xd800 && codeUnit <= 0xdbff;
}

/** Where a prefix cut ended and whether the last cluster of the text was taken. */
export interface PrefixCut {
  /** Length of the prefix in UTF-16 code units (`text.slice(0, end)`). */
  end: number;
  /** Encoded cost of the prefix (see encodedTextLength). */
  cost: number;
  /** Start offset of the last grapheme cluster of `text` when the whole text fit, else undefined. */
  lastClusterStart: number | undefined;
}

/**
 * The longest prefix of `text` whose encoded cost is at most `budget`, cut at a grapheme-cluster
 * boundary. When the very first cluster alone exceeds the budget (only pathological input such as
 * thousands of stacked combining marks), it falls back to cutting that cluster between code points,
 * still never inside a surrogate pair, so that progress is always made.
 *
 * Walks the clusters lazily, so cutting 5000 characters off a 100 000-character text does not
 * segment the rest.
 */
/** How much of the end of a text is segmented to find its last grapheme cluster. */
const TAIL_WINDOW = 64;

/**
 * Text in which every UTF-16 code unit is a grapheme cluster of its own, whatever follows: printable
 * ASCII, LF and tab, and the common CJK ranges (ideographs, CJK punctuation, fullwidth forms).
 * Nothing here joins a neighbour: no CR (CR LF is one cluster), no combining mark or sound mark, no
 * variation selector, ZWJ or surrogate, and without U+FE0F or U+20E3 a digit cannot become a
 * keycap. Chinese and English answers are almost always such text, and for them cutting needs no
 * Intl.Segmenter at all.
 */
const SINGLE_UNIT_CLUSTERS = /^[\t\n\x20-\x7e\u3000-\u3029\u3030-\u303f\u4e00-\u9fff\uff01-\uff5e]*$/;

/** Whether every code unit of `text` is a grapheme cluster of its own (see SINGLE_UNIT_CLUSTERS). */
export function isSingleUnitText(text: string): boolean {
  return SINGLE_UNIT_CLUSTERS.test(text);
}

/** Cuts single-unit-cluster text by code units: each costs 1, or 2 for `"`, `\\`, LF and tab. */
function cutSingleUnitText(text: string, budget: number): PrefixCut {
  let cost = 0;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    const unitCost = code === 0x22 || code === 0x5c || code === 0x0a || code === 0x09 ? 2 : 1;
    if (cost + unitCost > budget) return { end: index, cost, lastClusterStart: undefined };
    cost += unitCost;
  }
  return { end: text.length, cost, lastClusterStart: text.length > 0 ? text.length - 1 : undefined };
}

export function cutPrefixWithinBudget(text: string, budget: number): PrefixCut {
  if (!(budget >= MINIMUM_TEXT_BUDGET)) {
    throw new RangeError(`text budget must be at least ${MINIMUM_TEXT_BUDGET} characters, got ${budget}`);
  }
  // Only the part that could fit is examined, so a long backlog is not scanned whole.
  const window = text.length > budget ? text.slice(0, budget + 1) : text;
  if (SINGLE_UNIT_CLUSTERS.test(window)) {
    const cut = cutSingleUnitText(window, budget);
    // The window holds the whole text, or the cut ended inside it (budget + 1 units cost more than budget).
    if (window === text || cut.end < window.length) return cut;
  }
  // Fast path for the common case (the whole buffer fits): only the last cluster needs finding,
  // so segmenting a long backlog on every send does not cost time proportional to its length.
  // A text longer than the budget cannot fit (each code unit costs at least 1), and is not even
  // encoded whole: every cut then costs in proportion to the budget, never to the backlog.
  const wholeCost = text.length <= budget ? encodedTextLength(text) : Number.POSITIVE_INFINITY;
  if (wholeCost <= budget && text.length > TAIL_WINDOW) {
    const tailStart = text.length - TAIL_WINDOW;
    let lastInTail: number | undefined;
    for (const { index } of graphemeClusters(text.slice(tailStart))) lastInTail = index;
    // A last cluster starting at the window's edge might begin earlier: then scan it all.
    if (lastInTail !== undefined && lastInTail > 0) {
      return { end: text.length, cost: wholeCost, lastClusterStart: tailStart + lastInTail };
    }
  }
  let cost = 0;
  let lastClusterStart: number | undefined;
  for (const { segment, index } of graphemeClusters(text)) {
    const segmentCost = encodedTextLength(segment);
    if (cost + segmentCost > budget) {
      if (index === 0) return cutClusterByCodePoints(segment, budget);
      return { end: index, cost, lastClusterStart: undefined };
    }
    cost += segmentCost;
    lastClusterStart = index;
  }
  return { end: text.length, cost, lastClusterStart };
}

/** Cuts an oversized cluster between code points (never between the halves of a surrogate pair). */
function cutClusterByCodePoints(cluster: string, budget: number): PrefixCut {
  let end = 0;
  let cost = 0;
  for (const codePoint of cluster) {
    const codePointCost = encodedTextLength(codePoint);
    if (cost + codePointCost > budget) break;
    cost += codePointCost;
    end += codePoint.length;
  }
  return { end, cost, lastClusterStart: undefined };
}

/**
 * Splits `text` into consecutive pieces at grapheme-cluster boundaries, each costing at most
 * `budgetForPiece(pieceIndex)` encoded characters. The pieces concatenate exactly to `text`;
 * an empty text gives no pieces.
 */
export function splitWithinBudget(text: string, budgetForPiece: (pieceIndex: number) => number): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > 0) {
    const { end } = cutPrefixWithinBudget(rest, budgetForPiece(pieces.length));
    pieces.push(rest.slice(0, end));
    rest = rest.slice(end);
  }
  return pieces;
}

/**
 * Whether a grapheme cluster that ends a stream buffer could still be extended by text that has
 * not arrived yet, so that emitting it now would split a cluster across two deltas.
 *
 * Grapheme boundaries inside a buffer are final once the next code point is present (UAX #29 rules
 * look at what precedes a boundary and one code point after it), so only the trailing cluster is in
 * doubt. Strictly, almost any character can be followed by a combining mark; holding back every
 * trailing cluster would, however, delay a one-character first segment until the next token. The
 * rule is therefore an allow-list: the trailing cluster is released at once when its last code point
 * is one that no realistic continuation joins in NFC text, i.e. ASCII other than CR, digits, `#` and
 * `*` (CR + LF and keycaps `1️⃣` are single clusters), Latin-1/Latin Extended letters, Greek, Cyrillic,
 * general punctuation other than ZWNJ/ZWJ and the emoji `‼` `⁉`, CJK symbols and punctuation
 * (except the emoji `〰` `〽`), kana (except the combining sound marks), Bopomofo, CJK ideographs,
 * Hangul syllables, and halfwidth/fullwidth forms (except the halfwidth sound marks). Everything
 * else is held: lone high surrogates, ZWJ, variation selectors, emoji and skin-tone modifiers,
 * regional indicators (a flag is two of them), tag characters, combining marks, and letters of
 * scripts whose clusters are commonly built over several tokens (Indic, Thai, Arabic …).
 * Chinese and English answers, the common case, are thus never delayed.
 */
export function trailingClusterMayGrow(cluster: string): boolean {
  if (cluster.length === 0) return false;
  const lastCodeUnit = cluster.charCodeAt(cluster.length - 1);
  // A lone high surrogate at the end: the code point itself is not complete yet.
  if (isHighSurrogate(lastCodeUnit)) return true;
  const lastCodePoint = lastCodePointOf(cluster);
  return !isSettledCodePoint(lastCodePoint);
}

function lastCodePointOf(text: string): number {
  const last = text.charCodeAt(text.length - 1);
  if (last >= 0xdc00 && last <= 0xdfff && text.length >= 2) {
    const before = text.charCodeAt(text.length - 2);
    if (isHighSurrogate(before)) return (before - 0xd800) * 0x400 + (last - 0xdc00) + 0x10000;
  }
  return last;
}

/** Code points after which no realistic continuation extends the cluster (see trailingClusterMayGrow). */
function isSettledCodePoint(codePoint: number): boolean {
  if (codePoint < 0x80) {
    // CR may be followed by LF (one cluster); digits, # and * may become keycaps.
    return codePoint !== 0x0d && !(codePoint >= 0x30 && codePoint <= 0x39) && codePoint !== 0x23 && codePoint !== 0x2a;
  }
  // Latin-1 Supplement to Latin Extended-B, except © and ® (emoji with an optional VS16).
  if (codePoint <= 0x024f) return codePoint !== 0xa9 && codePoint !== 0xae;
  // Greek and Coptic, Cyrillic letters (the combining Cyrillic marks U+0483–U+0489 excluded).
  if (codePoint >= 0x0370 && codePoint <= 0x04ff) return !(codePoint >= 0x0483 && codePoint <= 0x0489);
  // General Punctuation, except ZWNJ/ZWJ (extend clusters), ‼ and ⁉ (emoji), and the invisible operators.
  if (codePoint >= 0x2000 && codePoint <= 0x205f) {
    return codePoint !== 0x200c && codePoint !== 0x200d && codePoint !== 0x203c && codePoint !== 0x2049;
  }
  // CJK radicals and Kangxi radicals, ideographic description characters.
  if (codePoint >= 0x2e80 && codePoint <= 0x2fff) return true;
  // CJK Symbols and Punctuation except 〰 and 〽 (emoji) and the ideographic tone marks (combining).
  if (codePoint >= 0x3000 && codePoint <= 0x303f) {
    return codePoint !== 0x3030 && codePoint !== 0x303d && !(codePoint >= 0x302a && codePoint <= 0x302f);
  }
  // Hiragana and Katakana except the combining voiced sound marks.
  if (codePoint >= 0x3040 && codePoint <= 0x30ff) return codePoint !== 0x3099 && codePoint !== 0x309a;
  // Bopomofo, Hangul compatibility jamo, Kanbun, Bopomofo extended, CJK strokes, Katakana extensions.
  if (codePoint >= 0x3100 && codePoint <= 0x31ff) return true;
  // Enclosed CJK letters and months except ㊗ and ㊙ (emoji), CJK compatibility, Extension A, URO.
  if (codePoint >= 0x3200 && codePoint <= 0x9fff) return codePoint !== 0x3297 && codePoint !== 0x3299;
  // Hangul syllables (precomposed; trailing conjoining jamo do not occur in NFC text).
  if (codePoint >= 0xac00 && codePoint <= 0xd7a3) return true;
  // CJK compatibility ideographs.
  if (codePoint >= 0xf900 && codePoint <= 0xfaff) return true;
  // CJK compatibility forms and small form variants.
  if (codePoint >= 0xfe30 && codePoint <= 0xfe6f) return true;
  // Halfwidth and fullwidth forms except the halfwidth voiced sound marks (they extend clusters).
  if (codePoint >= 0xff00 && codePoint <= 0xffef) return codePoint !== 0xff9e && codePoint !== 0xff9f;
  // CJK Unified Ideographs Extensions B and later (planes 2 and 3).
  if (codePoint >= 0x20000 && codePoint <= 0x3ffff) return true;
  return false;
}
