import { describe, expect, it } from "vitest";
import { createThinkFilter, removeThinkBlocks } from "./think-filter.ts";

/** Feeds `chunks` one by one and returns every output, the flush output last. */
function run(chunks: string[]): string[] {
  const filter = createThinkFilter();
  const outputs = chunks.map((chunk) => filter.push(chunk));
  outputs.push(filter.flush());
  return outputs;
}

function filtered(chunks: string[]): string {
  return run(chunks).join("");
}

/**
 * An independent whole-text reference: a block (to its first closing tag, or to the end when
 * unclosed) or a stray closing tag, each with the whitespace after it.
 */
function reference(text: string): string {
  return text.replace(/<think>[\s\S]*?(?:<\/think>\s*|$)|<\/think>\s*/gi, "");
}

/** Small deterministic PRNG (mulberry32) so failures reproduce. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomChunks(text: string, next: () => number, maxChunk: number): string[] {
  const chunks: string[] = [];
  let position = 0;
  while (position < text.length) {
    const size = Math.floor(next() * (maxChunk + 1)); // 0 included: empty chunks too
    chunks.push(text.slice(position, position + size));
    position += size;
  }
  return chunks;
}

describe("createThinkFilter", () => {
  it("passes text without tags through unchanged and at once", () => {
    expect(run(["Hello, ", "world", "！你好"])).toEqual(["Hello, ", "world", "！你好", ""]);
  });

  it("returns an empty string for an empty chunk", () => {
    const filter = createThinkFilter();
    expect(filter.push("")).toBe("");
    expect(filter.flush()).toBe("");
  });

  it("removes a leading block and the whitespace after it", () => {
    expect(filtered(["<think>Let me plan.\nStep 1…</think>\n\n  The answer is 4."])).toBe("The answer is 4.");
  });

  it("removes a block in the middle and keeps the text around it", () => {
    expect(filtered(["Before <think>hidden</think> after"])).toBe("Before after");
    expect(filtered(["Para 1.\n\n<think>x</think>\n\nPara 2."])).toBe("Para 1.\n\nPara 2.");
  });

  it("removes several blocks", () => {
    expect(filtered(["<think>a</think>one <think>b</think>two <think>c</think>three"])).toBe("one two three");
  });

  it("matches tags case-insensitively", () => {
    expect(filtered(["<THINK>a</THINK>x", "<Think>b</tHiNk>y"])).toBe("xy");
  });

  it("drops an unclosed block at the end of the stream but keeps the text before it", () => {
    expect(run(["Answer. <think>never", " closed </thi"])).toEqual(["Answer. ", "", ""]);
  });

  it("releases nothing from inside a block while it streams", () => {
    expect(run(["<think>", "secret ", "thoughts <", "/think", ">", "\n", "\n", "Hi"])).toEqual([
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      "Hi",
      "",
    ]);
  });

  it("handles an opening tag split at every position", () => {
    const text = "x<think>hidden</think>\n\ny";
    for (let first = 0; first <= text.length; first += 1) {
      for (let second = first; second <= text.length; second += 1) {
        const chunks = [text.slice(0, first), text.slice(first, second), text.slice(second)];
        expect(filtered(chunks), JSON.stringify(chunks)).toBe("xy");
      }
    }
  });

  it("holds back only what could still be a tag, and releases a stray '<' as soon as it is not one", () => {
    const filter = createThinkFilter();
    expect(filter.push("a <")).toBe("a ");
    expect(filter.push("b")).toBe("<b");
    expect(filter.push(" 3 < 4, x<t")).toBe(" 3 < 4, x");
    expect(filter.push("hin")).toBe("");
    expect(filter.push("king>")).toBe("<thinking>");
    expect(filter.push("</")).toBe("");
    expect(filter.push("p>")).toBe("</p>");
    expect(filter.push("<")).toBe("");
    expect(filter.flush()).toBe("<");
  });

  it("keeps look-alike tags", () => {
    expect(filtered(["<thinking>no</thinking> <th>cell</th> <think >x"])).toBe(
      "<thinking>no</thinking> <th>cell</th> <think >x",
    );
  });

  it("removes a stray closing tag (providers that omit the opening tag) and the whitespace after it", () => {
    expect(filtered(["reasoning text</think>\n\nAnswer"])).toBe("reasoning textAnswer");
    expect(filtered(["</th", "ink>", "\n", " Answer"])).toBe("Answer");
  });

  it("trims whitespace after a block across chunks, but not whitespace inside the answer", () => {
    expect(run(["<think>a</think>", "\n", " \n", "\tHi", " there", "\n\nbye"])).toEqual([
      "",
      "",
      "",
      "Hi",
      " there",
      "\n\nbye",
      "",
    ]);
  });

  it("keeps whitespace before a block", () => {
    expect(filtered(["Hello\n\n<think>x</think>"])).toBe("Hello\n\n");
  });

  it("does not nest blocks: the first closing tag ends the block", () => {
    expect(filtered(["<think>a<think>b</think>c</think>d"])).toBe("cd");
  });

  it("keeps non-ASCII text and surrogate pairs intact, even split", () => {
    expect(filtered(["你好<think>想", "一想</thi", "nk>\ud83d", "\ude00世界"])).toBe("你好😀世界");
  });

  it("is reusable after flush", () => {
    const filter = createThinkFilter();
    expect(filter.push("<think>open")).toBe("");
    expect(filter.flush()).toBe("");
    expect(filter.push("fresh")).toBe("fresh");
    expect(filter.flush()).toBe("");
  });

  it("holds back only a bounded amount inside a long block", () => {
    const filter = createThinkFilter();
    for (let index = 0; index < 1000; index += 1) filter.push("thinking hard ".repeat(10));
    expect(filter.push("</think>done")).toBe("done");
  });

  it("agrees with a regular-expression reference on whole texts", () => {
    const samples = [
      "",
      "plain",
      "<think>only</think>",
      "<think>\n</think>\n\n\n",
      "a</think>b</think>  c",
      "<think>a</think>  <think>b</think>  c",
      "x <think>y",
      "< think>no</ think>",
      "<<think>>a</think>>",
      "</</think>x",
    ];
    for (const sample of samples) expect(removeThinkBlocks(sample), JSON.stringify(sample)).toBe(reference(sample));
  });

  it("gives the same result for any chunking (property, random chunkings)", () => {
    const fragments = [
      "<think>",
      "</think>",
      "<THINK>",
      "</Think>",
      "<",
      "</",
      "<th",
      "think",
      "ink>",
      ">",
      " ",
      "\n",
      "\t",
      "a",
      "Hello",
      "你好",
      "😀",
      "👨‍👩‍👧",
      "<thinking>",
      "< think>",
    ];
    const next = random(20240607);
    for (let sample = 0; sample < 400; sample += 1) {
      const length = Math.floor(next() * 25);
      let text = "";
      for (let index = 0; index < length; index += 1) text += fragments[Math.floor(next() * fragments.length)];
      const whole = removeThinkBlocks(text);
      expect(whole, JSON.stringify(text)).toBe(reference(text));
      for (let chunking = 0; chunking < 10; chunking += 1) {
        const chunks = randomChunks(text, next, 1 + Math.floor(next() * 12));
        expect(filtered(chunks), JSON.stringify(chunks)).toBe(whole);
      }
      // One code unit at a time is the hardest chunking.
      expect(filtered([...text.split("")])).toBe(whole);
    }
  });
});
