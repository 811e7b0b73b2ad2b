import { describe, expect, it } from "vitest";
import { BotRegistry } from "./registry.ts";
import type { BotDefinition } from "./types.ts";

function bot(accid: string, name = accid): BotDefinition {
  return {
    accid,
    name,
    systemPrompt: `prompt of ${accid}`,
    generator: {
      kind: "openai",
      openaiBaseUrl: "http://llm.local/v1",
      openaiApiKey: "sk-secret",
      openaiModel: "m",
      httpUrl: undefined,
    },
    limits: { replyPerMinute: 1, replyPerDay: 2 },
  };
}

describe("BotRegistry", () => {
  const registry = new BotRegistry([bot("advisor_bot", "顾问"), bot("Tutor_Bot", "导师")], "TUTOR_BOT");

  it("finds a bot by accid whatever its case, and nobody else", () => {
    expect(registry.find("ADVISOR_BOT")?.name).toBe("顾问");
    expect(registry.find("tutor_bot")?.accid).toBe("tutor_bot");
    expect(registry.find("u_alice")).toBeUndefined();
    expect(registry.find(undefined)).toBeUndefined();
    expect(registry.find("")).toBeUndefined();
    expect(registry.isBot("Advisor_Bot")).toBe(true);
    expect(registry.isBot("advisor")).toBe(false);
  });

  it("knows the default bot and keeps the declared order", () => {
    expect(registry.default.accid).toBe("tutor_bot");
    expect(registry.accids()).toEqual(["advisor_bot", "tutor_bot"]);
    expect(new BotRegistry([bot("a"), bot("b")]).default.accid).toBe("a");
  });

  it("lists accid and name only, nothing secret", () => {
    const summaries = registry.summaries();
    expect(summaries).toEqual([
      { accid: "advisor_bot", name: "顾问" },
      { accid: "tutor_bot", name: "导师" },
    ]);
    expect(JSON.stringify(summaries)).not.toMatch(/sk-secret|prompt|llm\.local/);
  });

  it("refuses no bots, a repeated accid and an unknown default", () => {
    expect(() => new BotRegistry([])).toThrow(/at least one bot/);
    expect(() => new BotRegistry([bot("a"), bot("A")])).toThrow(/declared twice/);
    expect(() => new BotRegistry([bot("a")], "b")).toThrow(/not one of the bots/);
  });

  it("cannot be changed through its list", () => {
    expect(Object.isFrozen(registry.all)).toBe(true);
  });
});
