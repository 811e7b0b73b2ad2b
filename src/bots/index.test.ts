import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigurationError, loadConfig } from "../config/index.ts";
import type { GeneratorSettings, ReplyGenerator } from "../generators/index.ts";
import { createBotGenerators, generatorSettingsOf, loadBots } from "./index.ts";

const base = { NIM_APP_KEY: "key", NIM_APP_SECRET: "secret" };
const directory = mkdtempSync(join(tmpdir(), "im-bridge-load-bots-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe("loadBots", () => {
  it("without BOTS_FILE: the one bot NIM_BOT_ACCID with the environment's settings", () => {
    const config = loadConfig({
      ...base,
      NIM_BOT_ACCID: "Advisor_Bot",
      BOT_SYSTEM_PROMPT: "Be brief.",
      REPLY_LIMIT_PER_DAY: "7",
    });
    const registry = loadBots(config);
    expect(registry.summaries()).toEqual([{ accid: "advisor_bot", name: "advisor_bot" }]);
    expect(registry.default).toMatchObject({
      systemPrompt: "Be brief.",
      generator: { kind: "demo", openaiModel: "gpt-4o-mini" },
      limits: { replyPerMinute: 20, replyPerDay: 7 },
    });
  });

  it("without BOTS_FILE and without NIM_BOT_ACCID: a configuration error naming both", () => {
    expect(() => loadBots(loadConfig(base))).toThrow(ConfigurationError);
    expect(() => loadBots(loadConfig(base))).toThrow(/NIM_BOT_ACCID.*BOTS_FILE/);
  });

  it("with BOTS_FILE: the file's bots, environment defaults filled in", () => {
    writeFileSync(
      join(directory, "bots.json"),
      JSON.stringify({
        bots: [
          { accid: "advisor_bot", name: "顾问" },
          { accid: "tutor_bot", name: "导师", openai_model: "m2" },
        ],
      }),
    );
    const config = loadConfig({
      ...base,
      BOTS_FILE: "bots.json",
      OPENAI_API_KEY: "sk-env",
      NIM_BOT_ACCID: "tutor_bot",
    });
    const registry = loadBots(config, { cwd: directory });
    expect(registry.default.accid).toBe("tutor_bot");
    expect(registry.find("advisor_bot")?.generator).toMatchObject({
      kind: "openai",
      openaiApiKey: "sk-env",
      openaiModel: "gpt-4o-mini",
    });
    expect(registry.find("tutor_bot")?.generator.openaiModel).toBe("m2");
  });
});

describe("createBotGenerators", () => {
  it("builds one generator per bot through the factory, with the shared settings added", () => {
    writeFileSync(
      join(directory, "two.json"),
      JSON.stringify({
        bots: [
          { accid: "a", generator: "demo" },
          { accid: "b", generator: "http", generator_http_url: "http://site/x" },
        ],
      }),
    );
    const registry = loadBots(loadConfig({ ...base, BOTS_FILE: "two.json" }), { cwd: directory });
    const seen: GeneratorSettings[] = [];
    const factory = (settings: GeneratorSettings): ReplyGenerator => {
      seen.push(settings);
      return { name: settings.kind, generate: async function* () {} };
    };
    const generators = createBotGenerators(registry, { timeoutMs: 1234 }, factory);
    expect([...generators.keys()]).toEqual(["a", "b"]);
    expect(generators.get("b")?.name).toBe("http");
    expect(seen).toEqual([
      expect.objectContaining({ kind: "demo", timeoutMs: 1234 }),
      expect.objectContaining({ kind: "http", httpUrl: "http://site/x", timeoutMs: 1234 }),
    ]);
  });

  it("lets a bot's own settings win over the shared extras", () => {
    const registry = loadBots(loadConfig({ ...base, NIM_BOT_ACCID: "a", OPENAI_BASE_URL: "http://llm/v1" }));
    const settings = generatorSettingsOf(registry.default, { demoDelayMs: 5 });
    expect(settings).toMatchObject({ kind: "openai", openaiBaseUrl: "http://llm/v1", demoDelayMs: 5 });
  });

  it("builds real generators with the default factory", () => {
    const registry = loadBots(loadConfig({ ...base, NIM_BOT_ACCID: "a" }));
    expect(createBotGenerators(registry).get("a")?.name).toBeTypeOf("string");
  });
});
