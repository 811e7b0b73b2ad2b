import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadConfig } from "../config/index.ts";
import { type FakeOpenAi, startFakeOpenAi } from "../testing/fake-openai.ts";
import { collect, conformanceRequest } from "./conformance.ts";
import { createGenerator } from "./index.ts";

let server: FakeOpenAi;

beforeAll(async () => {
  server = await startFakeOpenAi({ apiKey: "sk-from-config" });
});

afterAll(async () => {
  await server.close();
});

describe("createGenerator", () => {
  test.each([
    [{}, "demo"],
    [{ OPENAI_API_KEY: "sk-x" }, "openai"],
    [{ OPENAI_BASE_URL: "http://127.0.0.1:11434/v1" }, "openai"],
    [{ BOT_GENERATOR: "http", GENERATOR_HTTP_URL: "https://www.example.com/bot/stream" }, "http"],
    [{ BOT_GENERATOR: "demo", OPENAI_API_KEY: "sk-x" }, "demo"],
  ])("builds from the configuration %j: %s", (environment, name) => {
    expect(createGenerator(loadConfig(environment).generator).name).toBe(name);
  });

  test("refuses the http kind without a URL", () => {
    expect(() => createGenerator({ kind: "http" })).toThrow(/GENERATOR_HTTP_URL/);
  });

  test("an openai generator built from the configuration talks to the configured server", async () => {
    server.setScenario({ kind: "text", text: "配置正确 configured", pieces: 3 });
    const config = loadConfig({
      OPENAI_BASE_URL: server.url,
      OPENAI_API_KEY: "sk-from-config",
      OPENAI_MODEL: "qwen-plus",
    });
    const { pieces, error } = await collect(createGenerator(config.generator), conformanceRequest);
    expect(error).toBeUndefined();
    expect(pieces.join("")).toBe("配置正确 configured");
    expect(server.requests.at(-1)?.body?.model).toBe("qwen-plus");
  });
});
