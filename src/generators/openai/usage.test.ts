/**
 * Token usage from the model's stream (operator console): the generator asks for
 * `stream_options.include_usage` and reports the last chunk's counts through `reportUsage`.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type FakeOpenAi, startFakeOpenAi } from "../../testing/fake-openai.ts";
import { collect, conformanceRequest } from "../conformance.ts";
import type { TokenUsage } from "../types.ts";
import { createOpenAiGenerator } from "./index.ts";

let server: FakeOpenAi;

beforeAll(async () => {
  server = await startFakeOpenAi();
});

afterAll(async () => {
  await server.close();
});

describe("openai generator usage", () => {
  test("asks for usage in the stream and reports the recorded counts once", async () => {
    server.setScenario({ kind: "fixture", name: "openai-with-usage" });
    const reports: TokenUsage[] = [];
    const before = server.requests.length;
    const generator = createOpenAiGenerator({ baseURL: server.url, apiKey: "sk-test", model: "m" });
    const { pieces, error } = await collect(generator, {
      ...conformanceRequest,
      reportUsage: (usage) => reports.push(usage),
    });
    expect(error).toBeUndefined();
    expect(pieces.join("")).toBe("你好！有什么可以帮你？");
    expect(reports).toEqual([{ promptTokens: 27, completionTokens: 9 }]);
    const body = server.requests[before]?.body as unknown as { stream_options?: unknown };
    expect(body.stream_options).toEqual({ include_usage: true });
  });

  test("leaves stream_options out when includeUsage is false, and reports nothing without a usage chunk", async () => {
    server.setScenario({ kind: "fixture", name: "openai-english-short" });
    const reports: TokenUsage[] = [];
    const before = server.requests.length;
    const generator = createOpenAiGenerator({
      baseURL: server.url,
      apiKey: "sk-test",
      model: "m",
      includeUsage: false,
    });
    const { error } = await collect(generator, { ...conformanceRequest, reportUsage: (usage) => reports.push(usage) });
    expect(error).toBeUndefined();
    expect(reports).toEqual([]);
    const body = server.requests[before]?.body as unknown as { stream_options?: unknown };
    expect(body.stream_options).toBeUndefined();
  });
});
