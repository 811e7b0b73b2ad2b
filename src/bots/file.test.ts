import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigurationError } from "../config/index.ts";
import { BOTS_FILE_MAX_BYTES, type BotDefaults, parseBotsFile, readBotsFile } from "./file.ts";

const defaults: BotDefaults = {
  generator: {
    kind: "demo",
    openaiBaseUrl: undefined,
    openaiApiKey: undefined,
    openaiModel: "gpt-4o-mini",
    httpUrl: undefined,
    systemPrompt: "default prompt",
  },
  limits: { replyPerMinute: 20, replyPerDay: 500 },
  defaultAccid: undefined,
};

function parse(document: unknown, overrides: Partial<BotDefaults> = {}) {
  return parseBotsFile(JSON.stringify(document), "bots.json", { ...defaults, ...overrides });
}

/** The problems of a file that must be refused. */
function problemsOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    return (error as ConfigurationError).problems;
  }
  throw new Error("expected a ConfigurationError");
}

describe("parseBotsFile: defaults", () => {
  it("needs only the accid; everything else comes from the environment", () => {
    const { bots, defaultAccid } = parse({ bots: [{ accid: "Advisor_Bot" }] });
    expect(defaultAccid).toBe("advisor_bot");
    expect(bots).toEqual([
      {
        accid: "advisor_bot",
        name: "advisor_bot",
        systemPrompt: "default prompt",
        generator: {
          kind: "demo",
          openaiBaseUrl: undefined,
          openaiApiKey: undefined,
          openaiModel: "gpt-4o-mini",
          httpUrl: undefined,
        },
        limits: { replyPerMinute: 20, replyPerDay: 500 },
      },
    ]);
  });

  it("takes every key of an entry over the environment", () => {
    const { bots } = parse({
      bots: [
        {
          accid: "tutor",
          name: " 导师 ",
          system_prompt: "You teach.",
          generator: "openai",
          openai_base_url: "http://127.0.0.1:11434/v1",
          openai_api_key: "sk-tutor",
          openai_model: "qwen2.5",
          reply_limit_per_minute: 3,
          reply_limit_per_day: 0,
        },
        { accid: "support", generator: "http", generator_http_url: "https://site.example/api/stream" },
      ],
    });
    expect(bots[0]).toMatchObject({
      accid: "tutor",
      name: "导师",
      systemPrompt: "You teach.",
      generator: {
        kind: "openai",
        openaiBaseUrl: "http://127.0.0.1:11434/v1",
        openaiApiKey: "sk-tutor",
        openaiModel: "qwen2.5",
      },
      limits: { replyPerMinute: 3, replyPerDay: 0 },
    });
    expect(bots[1]?.generator).toMatchObject({ kind: "http", httpUrl: "https://site.example/api/stream" });
  });

  it("uses openai for an entry that brings its own OpenAI endpoint or key and names no generator", () => {
    const { bots } = parse({ bots: [{ accid: "a", openai_api_key: "sk-a" }, { accid: "b" }] });
    expect(bots.map((bot) => bot.generator.kind)).toEqual(["openai", "demo"]);
  });

  it("falls back to the environment's OpenAI settings for an openai bot", () => {
    const { bots } = parse(
      { bots: [{ accid: "a", generator: "openai" }] },
      { generator: { ...defaults.generator, kind: "http", openaiApiKey: "sk-env", httpUrl: "http://h/" } },
    );
    expect(bots[0]?.generator).toMatchObject({ kind: "openai", openaiApiKey: "sk-env" });
  });

  it("makes NIM_BOT_ACCID the default bot, compared case-insensitively", () => {
    const document = { bots: [{ accid: "first" }, { accid: "Second" }] };
    expect(parse(document).defaultAccid).toBe("first");
    expect(parse(document, { defaultAccid: "SECOND" }).defaultAccid).toBe("second");
  });

  it("accepts a byte-order mark before the JSON", () => {
    expect(parseBotsFile(`\uFEFF{"bots":[{"accid":"a"}]}`, "bots.json", defaults).bots).toHaveLength(1);
  });
});

describe("parseBotsFile: every problem named at once", () => {
  it.each([
    ["not JSON", "{bots: [}", /bots\.json: is not valid JSON/],
    ["an array", "[]", /bots\.json: file: .*object/i],
    ["no bots key", "{}", /bots\.json: bots: /],
    ["bots not an array", '{"bots": {}}', /bots\.json: bots: /],
    ["an unknown top-level key", '{"bots": [{"accid":"a"}], "bot": []}', /bots\.json: .*bot/],
    ["no bots at all", '{"bots": []}', /bots: must list at least one bot/],
  ])("refuses %s", (_case, text, pattern) => {
    const problems = problemsOf(() => parseBotsFile(text, "bots.json", defaults));
    expect(problems.join("\n")).toMatch(pattern);
  });

  it("lists every bad entry with its index, accid and key", () => {
    const problems = problemsOf(() =>
      parse({
        bots: [
          { accid: "good" },
          { accid: "bad accid!" },
          { accid: "u_alice" },
          { accid: "GOOD" },
          { accid: "gen", generator: "gpt" },
          { accid: "oai", generator: "openai" },
          { accid: "hook", generator: "http" },
          { accid: "url", openai_base_url: "ftp://x", generator_http_url: "not a url" },
          { accid: "typo", system_promt: "x" },
          { name: "no accid" },
          "just a string",
          { accid: "named", name: "@顾问" },
          { accid: "empty", name: "  ", system_prompt: " " },
          { accid: "limits", reply_limit_per_minute: -1, reply_limit_per_day: 1.5 },
        ],
      }),
    );
    const text = problems.join("\n");
    expect(text).toContain('bots[1] (accid "bad accid!"): accid: must be 1-32 characters');
    expect(text).toContain('bots[2] (accid "u_alice"): accid: must not start with u_ or h_');
    expect(text).toContain('bots[3] (accid "GOOD"): accid: the same as bots[0]');
    expect(text).toContain('bots[4] (accid "gen"): generator: must be one of openai, http, demo');
    expect(text).toContain('bots[5] (accid "oai"): generator openai: needs openai_base_url or openai_api_key');
    expect(text).toContain('bots[6] (accid "hook"): generator http: needs generator_http_url');
    expect(text).toContain('bots[7] (accid "url"): openai_base_url: must be an http(s) URL');
    expect(text).toContain('bots[7] (accid "url"): generator_http_url: must be an http(s) URL');
    expect(text).toMatch(/bots\[8\] \(accid "typo"\): .*system_promt/);
    expect(text).toMatch(/bots\[9\]: accid: /);
    expect(text).toMatch(/bots\[10\]: entry: /);
    expect(text).toContain('bots[11] (accid "named"): name: must not contain "@"');
    expect(text).toContain('bots[12] (accid "empty"): name: must not be empty');
    expect(text).toContain('bots[12] (accid "empty"): system_prompt: must not be empty');
    expect(text).toMatch(/bots\[13\] \(accid "limits"\): reply_limit_per_minute: /);
    expect(text).toMatch(/bots\[13\] \(accid "limits"\): reply_limit_per_day: /);
    for (const problem of problems) expect(problem.startsWith("BOTS_FILE bots.json: ")).toBe(true);
    expect(problems).toHaveLength(16);
  });

  it("refuses two bots with the same name, case-insensitively", () => {
    const problems = problemsOf(() =>
      parse({
        bots: [
          { accid: "a", name: "Tutor" },
          { accid: "b", name: "tutor" },
        ],
      }),
    );
    expect(problems).toEqual([expect.stringContaining('bots[1] (accid "b"): name: the same as bots[0]')]);
  });

  it("refuses a NIM_BOT_ACCID that is not in the file", () => {
    const problems = problemsOf(() => parse({ bots: [{ accid: "a" }] }, { defaultAccid: "advisor_bot" }));
    expect(problems).toEqual([expect.stringContaining('NIM_BOT_ACCID "advisor_bot" is not one of the file\'s bots')]);
  });

  it("refuses more than a hundred bots", () => {
    const bots = Array.from({ length: 101 }, (_, index) => ({ accid: `bot${index}` }));
    expect(problemsOf(() => parse({ bots })).join("\n")).toContain("at most 100 bots");
  });

  it("never echoes a key, a URL or the text around a JSON syntax error", () => {
    const secret = "sk-very-secret-0123456789";
    const problems = problemsOf(() =>
      parseBotsFile(`{"bots": [{"accid": "a", "openai_api_key": "${secret}" oops}]}`, "bots.json", defaults),
    );
    expect(problems.join("\n")).not.toContain(secret);
    expect(problems.join("\n")).toMatch(/not valid JSON \((line \d+, column \d+|at character \d+)\)/);
    const misplaced = problemsOf(() =>
      parse({ bots: [{ accid: "a", generator: secret, openai_base_url: `https://user:${secret}@x y` }] }),
    );
    expect(misplaced.join("\n")).not.toContain(secret);
  });

  it("shortens a huge accid in the entry label", () => {
    const problems = problemsOf(() => parse({ bots: [{ accid: "x".repeat(10_000) }] }));
    expect(problems[0]!.length).toBeLessThan(200);
  });
});

describe("readBotsFile", () => {
  const directory = mkdtempSync(join(tmpdir(), "im-bridge-bots-"));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  it("reads a file relative to the given directory", () => {
    writeFileSync(join(directory, "bots.json"), JSON.stringify({ bots: [{ accid: "a", name: "甲" }] }));
    expect(readBotsFile("bots.json", defaults, directory).bots[0]?.name).toBe("甲");
  });

  it("names a missing file, a directory and an oversized file", () => {
    expect(problemsOf(() => readBotsFile("missing.json", defaults, directory))[0]).toMatch(
      /BOTS_FILE missing\.json: cannot be read \(no such file/,
    );
    mkdirSync(join(directory, "folder.json"));
    expect(problemsOf(() => readBotsFile("folder.json", defaults, directory))[0]).toMatch(/is not a regular file/);
    expect(problemsOf(() => readBotsFile("/dev/zero", defaults, directory))[0]).toMatch(/is not a regular file/);
    writeFileSync(join(directory, "big.json"), " ".repeat(BOTS_FILE_MAX_BYTES + 1));
    expect(problemsOf(() => readBotsFile("big.json", defaults, directory))[0]).toMatch(/more than the \d+ allowed/);
  });
});
