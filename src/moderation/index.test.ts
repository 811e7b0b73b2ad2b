import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  combineModerators,
  createModerator,
  createOutputWindowChecker,
  type ModerationVerdict,
  type Moderator,
  matchKeywordList,
  nimAntispamVerdict,
  parseKeywordList,
} from "./index.ts";

const context = { accid: "user_1" };

/** Records every output window and blocks what the keyword list blocks. */
function recordingModerator(terms: string) {
  const list = parseKeywordList(terms);
  const windows: string[] = [];
  const moderator: Moderator = {
    checkInput: async (text) => matchKeywordList(list, text),
    checkOutput: async (window) => {
      windows.push(window);
      return matchKeywordList(list, window);
    },
  };
  return { moderator, windows };
}

function fixed(verdict: ModerationVerdict, calls: string[], name: string): Moderator {
  return {
    checkInput: async () => {
      calls.push(`${name}:input`);
      return verdict;
    },
    checkOutput: async () => {
      calls.push(`${name}:output`);
      return verdict;
    },
  };
}

describe("combineModerators", () => {
  it("runs in order and the first block wins, later moderators are not asked", async () => {
    const calls: string[] = [];
    const combined = combineModerators([
      fixed({ allowed: true }, calls, "a"),
      fixed({ allowed: false, reason: "b said no" }, calls, "b"),
      fixed({ allowed: false, reason: "c said no" }, calls, "c"),
    ]);
    expect(await combined.checkInput("x", context)).toEqual({ allowed: false, reason: "b said no" });
    expect(await combined.checkOutput("x", context)).toEqual({ allowed: false, reason: "b said no" });
    expect(calls).toEqual(["a:input", "b:input", "a:output", "b:output"]);
  });

  it("allows when every moderator allows, and when there are none", async () => {
    const calls: string[] = [];
    const combined = combineModerators([fixed({ allowed: true }, calls, "a"), fixed({ allowed: true }, calls, "b")]);
    expect(await combined.checkInput("x", context)).toEqual({ allowed: true });
    expect(await combineModerators([]).checkOutput("x", context)).toEqual({ allowed: true });
  });

  it("closes every moderator", () => {
    let closed = 0;
    const closable: Moderator = {
      checkInput: async () => ({ allowed: true }),
      checkOutput: async () => ({ allowed: true }),
      close: () => {
        closed += 1;
      },
    };
    combineModerators([closable, closable]).close?.();
    expect(closed).toBe(2);
  });
});

describe("createModerator", () => {
  it("is undefined when nothing is configured", () => {
    expect(createModerator({ httpTimeoutMs: 2000, failOpen: false })).toBeUndefined();
    expect(createModerator({ keywordFile: "", httpUrl: "", httpTimeoutMs: 2000, failOpen: false })).toBeUndefined();
  });

  it("asks the keyword list first and the HTTP service only for what the list allows", async () => {
    const directory = mkdtempSync(join(tmpdir(), "im-bridge-moderation-"));
    const file = join(directory, "keywords.txt");
    writeFileSync(file, "forbidden\n");
    const asked: string[] = [];
    const fakeFetch = (async (_url: string, init: RequestInit) => {
      asked.push(JSON.parse(String(init.body)).text);
      return new Response(JSON.stringify({ allowed: false, reason: "remote" }), { status: 200 });
    }) as typeof fetch;
    const moderator = createModerator({
      keywordFile: file,
      httpUrl: "http://moderation.invalid/check",
      httpTimeoutMs: 2000,
      failOpen: false,
      fetch: fakeFetch,
    });
    try {
      expect(await moderator?.checkInput("so forbidden", context)).toMatchObject({ category: "keyword" });
      expect(await moderator?.checkInput("harmless", context)).toEqual({ allowed: false, reason: "remote" });
      expect(asked).toEqual(["harmless"]);
    } finally {
      moderator?.close?.();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("applies failOpen to the HTTP service", async () => {
    const failing = (async () => {
      throw new TypeError("fetch failed");
    }) as typeof fetch;
    const open = createModerator({ httpUrl: "http://x.invalid/", httpTimeoutMs: 50, failOpen: true, fetch: failing });
    const closed = createModerator({
      httpUrl: "http://x.invalid/",
      httpTimeoutMs: 50,
      failOpen: false,
      fetch: failing,
    });
    expect(await open?.checkInput("x", context)).toEqual({ allowed: true });
    expect(await closed?.checkInput("x", context)).toMatchObject({ allowed: false, reason: "moderation unavailable" });
  });
});

describe("nimAntispamVerdict", () => {
  it("blocks a copy NIM flagged", () => {
    expect(nimAntispamVerdict(true)).toMatchObject({ allowed: false, category: "nim-antispam" });
    expect(nimAntispamVerdict(false)).toEqual({ allowed: true });
    expect(nimAntispamVerdict(undefined)).toEqual({ allowed: true });
  });
});

describe("createOutputWindowChecker", () => {
  it("catches a term split across two pushes", async () => {
    const { moderator, windows } = recordingModerator("badword\n违禁词\n");
    const checker = createOutputWindowChecker(moderator, { windowCharacters: 200, context });
    expect(await checker.check("this is a bad")).toEqual({ allowed: true });
    expect(await checker.check("word indeed")).toMatchObject({ allowed: false, reason: 'keyword "badword"' });
    expect(windows[1]).toBe("this is a badword indeed");

    const chinese = createOutputWindowChecker(recordingModerator("违禁词").moderator);
    expect((await chinese.check("这是违")).allowed).toBe(true);
    expect((await chinese.check("禁词")).allowed).toBe(false);
  });

  it("catches a term split across many one-character pushes", async () => {
    const { moderator } = recordingModerator("badword");
    const checker = createOutputWindowChecker(moderator, { windowCharacters: 3, overlapCharacters: 10 });
    const verdicts: ModerationVerdict[] = [];
    for (const character of "…bad wo") verdicts.push(await checker.check(character));
    expect(verdicts.every((verdict) => verdict.allowed)).toBe(true);
    expect((await checker.check("r")).allowed).toBe(true);
    expect((await checker.check("d")).allowed).toBe(false);
  });

  it("never sends a window longer than windowCharacters + overlap, and checks a long delta in several windows", async () => {
    const { moderator, windows } = recordingModerator("needle");
    const checker = createOutputWindowChecker(moderator, { windowCharacters: 200, overlapCharacters: 50, context });
    const long = "x".repeat(1000);
    expect((await checker.check(long)).allowed).toBe(true);
    expect(windows).toHaveLength(5);
    expect(windows[0]).toHaveLength(200);
    for (const window of windows) expect(Array.from(window).length).toBeLessThanOrEqual(250);
    expect(windows.slice(1).every((window) => window.length === 250)).toBe(true);

    // Every character of the delta was checked: the windows, minus overlaps, rebuild it.
    const rebuilt =
      windows[0]! +
      windows
        .slice(1)
        .map((window) => window.slice(50))
        .join("");
    expect(rebuilt).toBe(long);
  });

  it("catches a term straddling two windows of one long delta", async () => {
    const { moderator, windows } = recordingModerator("needle");
    const checker = createOutputWindowChecker(moderator, { windowCharacters: 10, overlapCharacters: 5 });
    // "needle" spans characters 7..12, across the boundary at 10.
    expect(await checker.check("1234567needle890")).toMatchObject({ allowed: false });
    expect(windows).toEqual(["1234567nee", "67needle890"]);
  });

  it("stops at the first blocked window", async () => {
    const { moderator, windows } = recordingModerator("needle");
    const checker = createOutputWindowChecker(moderator, { windowCharacters: 10, overlapCharacters: 0 });
    expect((await checker.check("needle----" + "x".repeat(50))).allowed).toBe(false);
    expect(windows).toHaveLength(1);
  });

  it("counts code points, never splitting a surrogate pair", async () => {
    const { moderator, windows } = recordingModerator("needle");
    const checker = createOutputWindowChecker(moderator, { windowCharacters: 3, overlapCharacters: 1 });
    await checker.check("😀😀😀😀😀");
    expect(windows).toEqual(["😀😀😀", "😀😀😀"]);
    for (const window of windows) expect(window.isWellFormed()).toBe(true);
  });

  it("does not call the moderator for empty text and passes the context", async () => {
    const seen: Array<{ window: string; accid: string }> = [];
    const moderator: Moderator = {
      checkInput: async () => ({ allowed: true }),
      checkOutput: async (window, given) => {
        seen.push({ window, accid: given.accid });
        return { allowed: true };
      },
    };
    const checker = createOutputWindowChecker(moderator, { context: { accid: "u9" } });
    expect(await checker.check("")).toEqual({ allowed: true });
    expect(seen).toHaveLength(0);
    await checker.check("hi");
    expect(seen).toEqual([{ window: "hi", accid: "u9" }]);
  });
});
