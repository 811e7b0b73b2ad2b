import { describe, expect, it } from "vitest";
import type { BotSummary } from "../bots/types.ts";
import {
  addressedBots,
  displayNick,
  EXT_PARSE_LIMIT,
  parseAitMessage,
  replyMentionFields,
  textForBot,
  textForBots,
} from "./mentions.ts";

const advisor: BotSummary = { accid: "advisor_bot", name: "顾问" };
const advisorAssistant: BotSummary = { accid: "assistant_bot", name: "顾问助理" };
const tutor: BotSummary = { accid: "tutor_bot", name: "Tutor" };
const bob: BotSummary = { accid: "bob_bot", name: "bo" };
const emoji: BotSummary = { accid: "emoji_bot", name: "🤖‍🧠 Bot" };
const bots = [advisor, advisorAssistant, tutor, bob, emoji];

/** UIKit's ext for @-mentions of these accids, each at `start` with the given display text. */
function uikitExt(mentions: Array<{ accid: string; text: string; start: number }>): string {
  const ait: Record<string, unknown> = {};
  for (const mention of mentions) {
    const trimmed = mention.text.trimEnd();
    ait[mention.accid] = {
      text: mention.text,
      segments: [{ start: mention.start, end: mention.start + trimmed.length - 1, broken: false }],
    };
  }
  return JSON.stringify({ yxAitMsg: ait });
}

function addressed(text: string, ext?: string, fromAccount = "u_alice"): string[] {
  return addressedBots({ fromAccount, text, ext }, bots).map((bot) => bot.accid);
}

describe("addressedBots", () => {
  it.each<[string, string, string | undefined, string[]]>([
    [
      "UIKit @ by yxAitMsg key",
      "@顾问 利率多少？",
      uikitExt([{ accid: "advisor_bot", text: "@顾问 ", start: 0 }]),
      ["advisor_bot"],
    ],
    ["yxAitMsg key in another case", "hi", JSON.stringify({ yxAitMsg: { ADVISOR_BOT: {} } }), ["advisor_bot"]],
    ["yxAitMsg key with a malformed value", "hi", JSON.stringify({ yxAitMsg: { advisor_bot: 7 } }), ["advisor_bot"]],
    ["@ + name in the text", "@顾问 利率多少？", undefined, ["advisor_bot"]],
    ["full-width ＠", "＠顾问 利率多少？", undefined, ["advisor_bot"]],
    ["@ in the middle of the text", "请问@顾问，利率多少？", undefined, ["advisor_bot"]],
    ["Chinese name followed directly by text", "@顾问你好", undefined, ["advisor_bot"]],
    ["name case-insensitively", "@tutor help", undefined, ["tutor_bot"]],
    ["Latin name must end a word", "@tutors help", undefined, []],
    ["Latin name followed by punctuation", "@Tutor, help", undefined, ["tutor_bot"]],
    ["shorter Latin name inside a longer word", "@bob hi", undefined, []],
    ["longest name wins at one @", "@顾问助理 在吗", undefined, ["assistant_bot"]],
    ["both names at two @s", "@顾问 @顾问助理 比较一下", undefined, ["advisor_bot", "assistant_bot"]],
    [
      "two bots, one by ext one by text",
      "@顾问 和 @Tutor",
      uikitExt([{ accid: "advisor_bot", text: "@顾问 ", start: 0 }]),
      ["advisor_bot", "tutor_bot"],
    ],
    ["an e-mail address is not a mention", "write to me@Tutor please", undefined, []],
    ["no @ at all", "顾问 你好", undefined, []],
    ["an @ of a person", "@张三 你好", JSON.stringify({ yxAitMsg: { u_zhangsan: { text: "@张三 " } } }), []],
    ["@all by ait_all", "@所有人 开会", JSON.stringify({ yxAitMsg: { ait_all: { text: "@所有人 " } } }), []],
    ["emoji and ZWJ name", "@🤖‍🧠 Bot hello", undefined, ["emoji_bot"]],
    ["a name cut inside a surrogate pair", "@🤖 hello", undefined, []],
    ["a lone @", "@", undefined, []],
    ["text ending right after @ + partial name", "@顾", undefined, []],
    ["broken ext JSON, name in text", "@顾问 hi", '{"yxAitMsg":', ["advisor_bot"]],
    ["broken ext JSON, no name", "hi", '{"yxAitMsg":{"advisor_bot"', []],
    ["ext not an object", "hi", "[1,2,3]", []],
    ["yxAitMsg not an object", "hi", JSON.stringify({ yxAitMsg: ["advisor_bot"] }), []],
    ["yxAitMsg a string", "hi", JSON.stringify({ yxAitMsg: '{"advisor_bot":{}}' }), []],
    ["__proto__ keys", "hi", '{"__proto__":{"yxAitMsg":{"advisor_bot":{}}},"yxAitMsg":{"__proto__":{}}}', []],
  ])("%s", (_case, text, ext, expected) => {
    expect(addressed(text, ext)).toEqual(expected);
  });

  it("never wakes a bot for a bot's own message, whatever it says", () => {
    const ext = uikitExt([{ accid: "tutor_bot", text: "@Tutor ", start: 0 }]);
    expect(addressed("@Tutor hi", ext, "advisor_bot")).toEqual([]);
    expect(addressed("@Tutor hi", ext, "ADVISOR_BOT")).toEqual([]);
    expect(addressed("@顾问 hi", undefined, "advisor_bot")).toEqual([]);
  });

  it("ignores an ext over the parse limit but still reads the text", () => {
    const padding = "x".repeat(EXT_PARSE_LIMIT);
    const huge = JSON.stringify({ padding, yxAitMsg: { tutor_bot: {} } });
    expect(addressed("hi", huge)).toEqual([]);
    expect(addressed("@顾问 hi", huge)).toEqual(["advisor_bot"]);
  });

  it("copes with a large, deep or odd ext", () => {
    const many: Record<string, unknown> = {};
    for (let index = 0; index < 5000; index++) many[`u_${index}`] = { segments: Array(50).fill({ start: 0, end: 1 }) };
    many.advisor_bot = {};
    expect(addressed("hi", JSON.stringify({ yxAitMsg: many }).slice(0, EXT_PARSE_LIMIT - 1))).toEqual([]);
    expect(addressed("hi", `${"[".repeat(5000)}${"]".repeat(5000)}`)).toEqual([]);
  });
});

describe("textForBot", () => {
  it.each<[string, string, string | undefined, BotSummary, string]>([
    [
      "UIKit segment (inclusive end)",
      "@顾问 利率多少？",
      uikitExt([{ accid: "advisor_bot", text: "@顾问 ", start: 0 }]),
      advisor,
      "利率多少？",
    ],
    [
      "UIKit segment in the middle",
      "请问 @顾问 利率多少？",
      uikitExt([{ accid: "advisor_bot", text: "@顾问 ", start: 3 }]),
      advisor,
      "请问 利率多少？",
    ],
    [
      "segment whose end is exclusive",
      "@顾问 利率",
      JSON.stringify({
        yxAitMsg: { advisor_bot: { text: "@顾问 ", segments: [{ start: 0, end: 4, broken: false }] } },
      }),
      advisor,
      "利率",
    ],
    [
      "segment text differs from the bot's name (UIKit shows the team nickname)",
      "@小顾 利率",
      JSON.stringify({
        yxAitMsg: { advisor_bot: { text: "@小顾 ", segments: [{ start: 0, end: 2, broken: false }] } },
      }),
      advisor,
      "利率",
    ],
    [
      "segment that does not start at an @ is ignored",
      "利率 @顾问",
      JSON.stringify({ yxAitMsg: { advisor_bot: { text: "@顾问 ", segments: [{ start: 0, end: 2 }] } } }),
      advisor,
      "利率",
    ],
    [
      "segment beyond the text is ignored",
      "利率",
      JSON.stringify({ yxAitMsg: { advisor_bot: { segments: [{ start: 99, end: 101 }] } } }),
      advisor,
      "利率",
    ],
    [
      "a wild segment cannot swallow the question",
      `@${"x".repeat(200)}`,
      JSON.stringify({ yxAitMsg: { advisor_bot: { segments: [{ start: 0, end: 150 }] } } }),
      advisor,
      `@${"x".repeat(200)}`,
    ],
    [
      "broken segment left alone",
      "@顾问 利率",
      JSON.stringify({ yxAitMsg: { advisor_bot: { segments: [{ start: 0, end: 2, broken: true }] } } }),
      { accid: "advisor_bot", name: "不匹配" },
      "@顾问 利率",
    ],
    ["typed @name", "@顾问 利率多少？", undefined, advisor, "利率多少？"],
    ["typed @name twice", "@顾问 利率 @顾问 多少", undefined, advisor, "利率 多少"],
    ["typed full-width ＠name", "＠顾问　利率", undefined, advisor, "利率"],
    ["another bot's @ stays", "@顾问 @Tutor 比较", undefined, advisor, "@Tutor 比较"],
    ["a person's @ stays", "@顾问 问问 @张三", undefined, advisor, "问问 @张三"],
    ["longer name not cut for the shorter bot", "@顾问助理 在吗", undefined, advisor, "@顾问助理 在吗"],
    ["the longer-named bot's own @ is cut", "@顾问助理 在吗", undefined, advisorAssistant, "在吗"],
    ["only the @", "@顾问", undefined, advisor, ""],
    ["emoji name", "@🤖‍🧠 Bot 你好", undefined, emoji, "你好"],
    ["case-insensitive name", "@TUTOR explain", undefined, tutor, "explain"],
    ["no mention at all", "  just text  ", undefined, advisor, "just text"],
    [
      "ext and typed text overlap",
      "@顾问 利率",
      uikitExt([{ accid: "advisor_bot", text: "@顾问 ", start: 0 }]),
      advisor,
      "利率",
    ],
    ["broken ext JSON", "@顾问 利率", "{not json", advisor, "利率"],
  ])("%s", (_case, text, ext, bot, expected) => {
    expect(textForBot({ text, ext }, bot, bots.includes(bot) ? bots : [bot])).toBe(expected);
  });

  it("works with only the bot itself as the list", () => {
    expect(textForBot({ text: "@顾问 hi" }, advisor)).toBe("hi");
  });
});

describe("textForBots", () => {
  it("cuts the @ of every addressed bot, by ext and by name, and keeps other mentions", () => {
    const text = "@顾问 @Tutor /stop";
    const ext = uikitExt([{ accid: advisor.accid, text: "@顾问 ", start: 0 }]);
    expect(textForBots({ text, ext }, [advisor, tutor], bots)).toBe("/stop");
    expect(textForBot({ text, ext }, advisor, bots)).toBe("@Tutor /stop");
    expect(textForBots({ text: "@顾问 @bo hi" }, [advisor], bots)).toBe("@bo hi");
  });

  it("is textForBot for one bot", () => {
    const message = { text: "请问@顾问助理 和 @顾问 利率", ext: undefined };
    expect(textForBots(message, [advisor], bots)).toBe(textForBot(message, advisor, bots));
  });
});

describe("replyMentionFields", () => {
  it("mentions the asker the way UIKit writes it", () => {
    const fields = replyMentionFields({ accid: "U_Alice", nick: "Alice" }, { botName: "顾问" });
    expect(JSON.parse(fields.forcepushlist)).toEqual(["u_alice"]);
    expect(fields.forcepushcontent).toBe("顾问 回复了你 / replied to you");
    expect(JSON.parse(fields.ext)).toEqual({
      yxAitMsg: { u_alice: { text: "@Alice ", segments: [{ start: 0, end: 5, broken: false }] } },
    });
  });

  it("reads back through its own parser as an @ of the asker covering '@Nick'", () => {
    const fields = replyMentionFields({ accid: "u_bob", nick: "小明😀" });
    const entry = parseAitMessage(fields.ext).get("u_bob");
    const shown = `${entry?.text}答案`;
    const segment = entry!.segments[0]!;
    expect(shown.slice(segment.start, segment.end + 1)).toBe("@小明😀");
  });

  it.each<[string, string | undefined, string]>([
    ["no nick: the accid", undefined, "@u_carol "],
    ["empty nick: the accid", "", "@u_carol "],
    ["blank nick: the accid", "  \n ", "@u_carol "],
    ["control characters removed", "Ca\u0000rol\u202e", "@Carol\u202e "],
    ["lone surrogates removed", "Ca\uD800rol", "@Carol "],
    ["long nick cut to 32 code points", "字".repeat(100), `@${"字".repeat(32)} `],
    ["JSON-ish nick kept as text", '","yxAitMsg":{"x":1}', '@","yxAitMsg":{"x":1} '],
  ])("%s", (_case, nick, expectedText) => {
    const fields = replyMentionFields({ accid: "u_carol", nick });
    const ext = JSON.parse(fields.ext) as {
      yxAitMsg: Record<string, { text: string; segments: Array<{ end: number }> }>;
    };
    expect(Object.keys(ext.yxAitMsg)).toEqual(["u_carol"]);
    expect(ext.yxAitMsg.u_carol?.text).toBe(expectedText);
    expect(ext.yxAitMsg.u_carol?.segments[0]?.end).toBe(expectedText.trimEnd().length - 1);
    expect(fields.ext.length).toBeLessThan(1024);
  });

  it("takes a push text, cleaned and cut", () => {
    const fields = replyMentionFields({ accid: "u_a" }, { pushContent: `答\n案${"长".repeat(200)}` });
    expect(fields.forcepushcontent).toMatch(/^答 案长+$/);
    expect(Array.from(fields.forcepushcontent)).toHaveLength(100);
  });
});

describe("displayNick", () => {
  it("never cuts a surrogate pair in half", () => {
    const nick = displayNick("😀".repeat(40));
    expect(Array.from(nick)).toHaveLength(32);
    expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/.test(nick)).toBe(false);
  });
});
