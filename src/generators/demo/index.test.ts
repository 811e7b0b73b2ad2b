import { describe, expect, test } from "vitest";
import { collect, conformanceRequest, runGeneratorConformance } from "../conformance.ts";
import { GeneratorError } from "../types.ts";
import { countHan, createDemoGenerator, demoAnswer, LONG_ANSWER_HAN_CHARACTERS, splitIntoPieces } from "./index.ts";

runGeneratorConformance("demo", {
  // No upstream: its text is its own, nothing can fail upstream and nothing is received.
  capabilities: { echoesUpstreamText: false, upstreamFailures: false, recordsRequests: false },
  setup(scenario) {
    // "stall": pauses long enough that the abort lands while the generator is waiting; otherwise
    // short pauses, since the demo's own answer has about a hundred pieces.
    const delayMs = scenario.kind === "stall" ? 400 : 2;
    return { generator: createDemoGenerator({ delayMs }) };
  },
});

const instant = createDemoGenerator({ delayMs: 0 });

describe("demo generator", () => {
  test("says it is a demo in Chinese and English, quotes the message and counts the history", async () => {
    const { pieces, error } = await collect(instant, conformanceRequest);
    expect(error).toBeUndefined();
    const text = pieces.join("");
    expect(text).toBe(demoAnswer(conformanceRequest));
    expect(text).toContain("这是演示回复");
    expect(text).toContain("demo generator, no LLM configured");
    expect(text).toContain(`「${conformanceRequest.message}」`);
    expect(text).toContain("之前的 4 条对话");
    expect(text).toContain("4 earlier turns");
  });

  test("the same input gives the same pieces, not only the same text", async () => {
    const first = await collect(instant, conformanceRequest);
    const second = await collect(createDemoGenerator({ delayMs: 0 }), conformanceRequest);
    expect(second.pieces).toEqual(first.pieces);
  });

  test("the answer depends on the message and the history length only", () => {
    const base = demoAnswer(conformanceRequest);
    expect(demoAnswer({ ...conformanceRequest, userId: "someone-else", accid: "other" })).toBe(base);
    expect(demoAnswer({ ...conformanceRequest, message: "another question" })).not.toBe(base);
    expect(demoAnswer({ ...conformanceRequest, history: [] })).toContain("之前的 0 条对话");
  });

  test("quotes an empty message and cuts a long one", () => {
    expect(demoAnswer({ ...conformanceRequest, message: "   " })).toContain("（空消息 / empty message）");
    const quoted = demoAnswer({ ...conformanceRequest, message: "问".repeat(500) });
    expect(quoted).toContain(`「${"问".repeat(200)}…」`);
  });

  test.each(["please give me a LONG answer", "来一篇长文", "我要长回复"])(
    "%j produces about 6000 Chinese characters",
    async (message) => {
      const { pieces, error } = await collect(instant, { ...conformanceRequest, message });
      expect(error).toBeUndefined();
      const text = pieces.join("");
      expect(countHan(text)).toBeGreaterThanOrEqual(LONG_ANSWER_HAN_CHARACTERS);
      expect(countHan(text)).toBeLessThan(LONG_ANSWER_HAN_CHARACTERS + 500);
      // Bigger pieces for the long answer: it streams in seconds, not minutes.
      expect(pieces.length).toBeLessThan(text.length / 10);
    },
  );

  test.each(["belong", "along the river", "长城", "成长"])("%j is not the long answer", (message) => {
    expect(countHan(demoAnswer({ ...conformanceRequest, message }))).toBeLessThan(300);
  });

  test("/demo-think starts with a <think> block", () => {
    const text = demoAnswer({ ...conformanceRequest, message: "/demo-think" });
    expect(text).toMatch(/^<think>\n.*\n<\/think>\n\n这是演示回复/s);
  });

  test("/demo-fail yields a few pieces, then GeneratorError 503", async () => {
    const { pieces, error } = await collect(instant, { ...conformanceRequest, message: "/demo-fail" });
    expect(pieces).toHaveLength(3);
    expect(error).toBeInstanceOf(GeneratorError);
    expect((error as GeneratorError).status).toBe(503);
  });

  test("paces pieces around delayMs", async () => {
    const generator = createDemoGenerator({ delayMs: 10, random: () => 0.5 });
    const started = performance.now();
    const { pieces } = await collect(generator, { ...conformanceRequest, history: [], message: "hi" });
    const perPiece = (performance.now() - started) / pieces.length;
    expect(perPiece).toBeGreaterThanOrEqual(9);
    expect(perPiece).toBeLessThan(40);
  });
});

describe("splitIntoPieces", () => {
  test("keeps Latin words with their spaces, groups other characters, never splits a code point", () => {
    const text = "Hello world, 你好世界🙂！\nnext line";
    const pieces = splitIntoPieces(text, () => 0.99, [2, 2]);
    expect(pieces.join("")).toBe(text);
    expect(pieces).toContain("Hello ");
    expect(pieces).toContain("world");
    expect(pieces.some((piece) => /[\uD800-\uDBFF]$/.test(piece))).toBe(false);
  });
});
