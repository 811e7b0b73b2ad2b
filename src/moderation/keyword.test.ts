import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../http/logger.ts";
import {
  createKeywordModerator,
  KeywordListError,
  type KeywordModerator,
  type ModerationLogger,
  matchKeywordList,
  parseKeywordList,
} from "./keyword.ts";

const context = { accid: "user_1" };

function recordingLogger() {
  const warnings: Array<{ details: object; message: string }> = [];
  const infos: Array<{ details: object; message: string }> = [];
  const logger: ModerationLogger = {
    warn: (details, message) => warnings.push({ details, message }),
    info: (details, message) => infos.push({ details, message }),
  };
  return { logger, warnings, infos };
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("parseKeywordList / matchKeywordList", () => {
  const list = parseKeywordList(
    [
      "\uFEFF# a comment line",
      "",
      "   ",
      "badword",
      "Bad",
      "敏感词",
      "赌 博",
      "c#",
      "/usr/bin",
      "/\\bass\\b/",
      "/^sell\\s+\\d+ accounts$/m",
      "/FoO[0-9]+/g",
      "\u200B",
    ].join("\r\n"),
  );

  const blocked = (text: string) => !matchKeywordList(list, text).allowed;

  it("ignores comments, blank lines and lines of only invisible characters", () => {
    expect(list.termsByForm.size).toBe(6);
    expect(list.patterns).toHaveLength(3);
    expect(blocked("# a comment line")).toBe(false);
    expect(blocked("an innocent sentence")).toBe(false);
    expect(blocked("")).toBe(false);
  });

  it("matches English terms case-insensitively, anywhere in the text", () => {
    expect(blocked("this is BAD.")).toBe(true);
    expect(blocked("BadWord!")).toBe(true);
    expect(blocked("so, bAdWoRd")).toBe(true);
  });

  it("matches Chinese terms, also a listed term written with a space", () => {
    expect(blocked("这里有敏感词出现")).toBe(true);
    expect(blocked("我们去赌博吧")).toBe(true);
    expect(blocked("敏感")).toBe(false);
  });

  it("normalises full-width and compatibility forms (NFKC)", () => {
    expect(blocked("ＢＡＤ")).toBe(true);
    expect(blocked("ｂａｄｗｏｒｄ")).toBe(true);
    // U+FF03 FULLWIDTH NUMBER SIGN is "#" after NFKC.
    expect(blocked("I write Ｃ＃ daily")).toBe(true);
  });

  it("ignores whitespace and invisible characters put between the characters of a term", () => {
    expect(blocked("b a d")).toBe(true);
    expect(blocked("b\u200Bad")).toBe(true);
    expect(blocked("b\u00ADa\u2060d")).toBe(true);
    expect(blocked("b\u034Fa\u202Ed")).toBe(true);
    expect(blocked("敏\u3000感\u200D词")).toBe(true);
    expect(blocked("b\ta\nd")).toBe(true);
    expect(blocked("b-a-d")).toBe(false);
  });

  it("names the term as written in the file in the reason", () => {
    expect(matchKeywordList(list, "ＢＡＤＷＯＲＤ")).toEqual({
      allowed: false,
      reason: 'keyword "badword"',
      category: "keyword",
    });
    expect(matchKeywordList(list, "b a d")).toMatchObject({ reason: 'keyword "Bad"' });
  });

  it("treats a line without valid flags as a term, not a regex", () => {
    expect(blocked("see /usr/bin/env")).toBe(true);
    expect(blocked("/USR/BIN")).toBe(true);
  });

  it("runs /regex/flags lines case-insensitively on the NFKC text, spaces kept", () => {
    expect(blocked("you ass")).toBe(true);
    expect(blocked("ＡＳＳ")).toBe(true);
    expect(blocked("a classic")).toBe(false);
    expect(blocked("first line\nSELL 20 accounts")).toBe(true);
    expect(matchKeywordList(list, "foo12")).toEqual({
      allowed: false,
      reason: "pattern /FoO[0-9]+/i",
      category: "keyword",
    });
  });

  it("drops g and y so repeated checks give the same answer", () => {
    expect(blocked("foo1")).toBe(true);
    expect(blocked("foo1")).toBe(true);
    expect(list.patterns[2]?.flags).toBe("i");
  });

  it("rejects a broken regex, naming the line", () => {
    expect(() => parseKeywordList("ok\n/(unclosed/\n", "list.txt")).toThrow(KeywordListError);
    expect(() => parseKeywordList("ok\n/(unclosed/\n", "list.txt")).toThrow(/list\.txt line 2/);
    expect(() => parseKeywordList("/a/uv")).toThrow(KeywordListError);
  });

  it("an empty list allows everything", () => {
    const empty = parseKeywordList("# nothing yet\n");
    expect(matchKeywordList(empty, "anything bad")).toEqual({ allowed: true });
  });

  it("escapes regular-expression syntax in plain terms", () => {
    const special = parseKeywordList("a.b\n(x)\n[y]\nq+\n");
    expect(matchKeywordList(special, "axb").allowed).toBe(true);
    expect(matchKeywordList(special, "a.b").allowed).toBe(false);
    expect(matchKeywordList(special, "(x)").allowed).toBe(false);
    expect(matchKeywordList(special, "[y]").allowed).toBe(false);
    expect(matchKeywordList(special, "qq").allowed).toBe(true);
    expect(matchKeywordList(special, "q+").allowed).toBe(false);
  });

  it("stays fast with a long list", () => {
    const terms = Array.from({ length: 5000 }, (_, index) => `term${index}x`);
    const big = parseKeywordList(terms.join("\n"));
    const text = "lorem ipsum ".repeat(100);
    const started = performance.now();
    for (let round = 0; round < 100; round += 1) matchKeywordList(big, text);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(matchKeywordList(big, "… term4999x …").allowed).toBe(false);
  });
});

describe("createKeywordModerator", () => {
  let directory: string;
  let moderator: KeywordModerator | undefined;

  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-keywords-"));
  });
  afterEach(() => {
    moderator?.close();
    moderator = undefined;
    rmSync(directory, { recursive: true, force: true });
  });

  it("checks input and output against the file", async () => {
    const file = join(directory, "keywords.txt");
    writeFileSync(file, "bad\n违禁\n");
    moderator = createKeywordModerator({ file });
    expect(await moderator.checkInput("hello", context)).toEqual({ allowed: true });
    expect(await moderator.checkInput("b a d", context)).toMatchObject({ allowed: false, category: "keyword" });
    expect(await moderator.checkOutput("这是违禁内容", context)).toMatchObject({ allowed: false });
    expect(moderator.size()).toEqual({ terms: 2, patterns: 0 });
  });

  it("throws at start for a missing or broken file, naming it", () => {
    expect(() => createKeywordModerator({ file: join(directory, "absent.txt") })).toThrow(/absent\.txt/);
    const broken = join(directory, "broken.txt");
    writeFileSync(broken, "/[/\n");
    expect(() => createKeywordModerator({ file: broken })).toThrow(KeywordListError);
  });

  it("reloads after the file changes, without a restart", async () => {
    const file = join(directory, "keywords.txt");
    writeFileSync(file, "alpha\n");
    const { logger, infos } = recordingLogger();
    moderator = createKeywordModerator({ file, reloadIntervalMs: 20, logger });
    const current = moderator;
    expect((await current.checkInput("beta", context)).allowed).toBe(true);

    // Different size as well as mtime, so the change is visible even on coarse-mtime file systems.
    writeFileSync(file, "alpha\nbeta\n/gam+a/\n");
    await waitFor(async () => !(await current.checkInput("beta", context)).allowed);
    expect((await current.checkInput("gammmma", context)).allowed).toBe(false);
    expect(current.size()).toEqual({ terms: 2, patterns: 1 });
    expect(infos.some((entry) => entry.message.includes("reloaded"))).toBe(true);
  });

  it("keeps the last good list when a reload does not parse, and warns once", async () => {
    const file = join(directory, "keywords.txt");
    writeFileSync(file, "alpha\n");
    const { logger, warnings } = recordingLogger();
    moderator = createKeywordModerator({ file, reloadIntervalMs: 20, logger });
    const current = moderator;

    writeFileSync(file, "alpha\nbeta\n/(broken/\n");
    await waitFor(() => warnings.length > 0);
    // Many more polls: the same broken file is not re-read or re-warned about.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.details).toMatchObject({ file });
    expect((await current.checkInput("alpha", context)).allowed).toBe(false);
    expect((await current.checkInput("beta", context)).allowed).toBe(true);

    // Fixed: loaded.
    writeFileSync(file, "gamma\n");
    await waitFor(async () => !(await current.checkInput("gamma", context)).allowed);
    expect((await current.checkInput("alpha", context)).allowed).toBe(true);
  });

  it("keeps the last list while the file is missing", async () => {
    const file = join(directory, "keywords.txt");
    writeFileSync(file, "alpha\n");
    const { logger, warnings } = recordingLogger();
    moderator = createKeywordModerator({ file, reloadIntervalMs: 20, logger });
    rmSync(file);
    await waitFor(() => warnings.length > 0);
    expect((await moderator.checkInput("alpha", context)).allowed).toBe(false);
    expect(await moderator.reload()).toBe(false);
  });

  it("reload() reads the file at once", async () => {
    const file = join(directory, "keywords.txt");
    writeFileSync(file, "alpha\n");
    moderator = createKeywordModerator({ file, reloadIntervalMs: 60_000 });
    writeFileSync(file, "alpha\nomega\n");
    expect(await moderator.reload()).toBe(true);
    expect((await moderator.checkInput("OMEGA", context)).allowed).toBe(false);
    writeFileSync(file, "/(/\n");
    expect(await moderator.reload()).toBe(false);
    expect((await moderator.checkInput("OMEGA", context)).allowed).toBe(false);
  });

  it("accepts the service's pino logger", () => {
    const file = join(directory, "keywords.txt");
    writeFileSync(file, "alpha\n");
    moderator = createKeywordModerator({ file, logger: createLogger({ level: "silent" }) });
    expect(moderator.size().terms).toBe(1);
  });
});
