import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { type FakeOpenAi, type FakeOpenAiScenario, startFakeOpenAi } from "../../testing/fake-openai.ts";
import {
  type ConformanceScenario,
  collect,
  conformanceRequest,
  type ReceivedRequest,
  runGeneratorConformance,
} from "../conformance.ts";
import { GeneratorError } from "../types.ts";
import { buildMessages, createOpenAiGenerator, PLACEHOLDER_API_KEY } from "./index.ts";

const API_KEY = "sk-test-0123456789";
const MODEL = "test-model-7b";

let server: FakeOpenAi;

beforeAll(async () => {
  server = await startFakeOpenAi();
});

afterAll(async () => {
  await server.close();
});

function generatorFor(options: { apiKey?: string; model?: string; timeoutMs?: number } = {}) {
  return createOpenAiGenerator({
    baseURL: server.url,
    apiKey: options.apiKey ?? API_KEY,
    model: options.model ?? MODEL,
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
}

/** The chat messages the fake received, read back as a GenerationRequest's parts. */
function asReceivedRequest(messages: Array<{ role: string; content: string }>): ReceivedRequest {
  const [system, ...rest] = messages;
  const user = rest.pop();
  return {
    systemPrompt: system?.role === "system" ? system.content : "",
    message: user?.content ?? "",
    history: rest.map((turn) => ({ role: turn.role as "user" | "assistant", content: turn.content })),
  };
}

function toFakeScenario(scenario: ConformanceScenario): FakeOpenAiScenario {
  switch (scenario.kind) {
    case "text":
      return { kind: "text", text: scenario.text, pieces: scenario.pieces, delayMs: scenario.delayMs };
    case "stall":
      return { kind: "stall", text: scenario.text };
    case "failure":
      return { kind: "error", status: scenario.status };
    case "empty":
      return { kind: "text", text: "" };
  }
}

runGeneratorConformance("openai", {
  capabilities: { echoesUpstreamText: true, upstreamFailures: true, recordsRequests: true },
  setup(scenario) {
    server.setScenario(toFakeScenario(scenario));
    const firstRequest = server.requests.length;
    return {
      generator: generatorFor(),
      received: () =>
        server.requests.slice(firstRequest).map((request) => asReceivedRequest(request.body?.messages ?? [])),
    };
  },
});

describe("openai generator against the fake OpenAI server", () => {
  test("sends model, stream: true, the Bearer key, and system prompt + history + message in order", async () => {
    server.setScenario({ kind: "text", text: "OK", pieces: 1 });
    const before = server.requests.length;
    const { error } = await collect(generatorFor(), conformanceRequest);
    expect(error).toBeUndefined();
    const [request] = server.requests.slice(before);
    expect(request?.path).toBe("/v1/chat/completions");
    expect(request?.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(request?.body?.model).toBe(MODEL);
    expect(request?.body?.stream).toBe(true);
    expect(request?.body?.messages).toEqual([
      { role: "system", content: conformanceRequest.systemPrompt },
      ...conformanceRequest.history,
      { role: "user", content: conformanceRequest.message },
    ]);
  });

  test("sends a placeholder key when none is configured (Ollama, vLLM)", async () => {
    server.setScenario({ kind: "text", text: "OK", pieces: 1 });
    const before = server.requests.length;
    const generator = createOpenAiGenerator({ baseURL: server.url, model: MODEL });
    const { error } = await collect(generator, conformanceRequest);
    expect(error).toBeUndefined();
    expect(server.requests[before]?.headers.authorization).toBe(`Bearer ${PLACEHOLDER_API_KEY}`);
  });

  test("replays a recorded short English answer", async () => {
    server.setScenario({ kind: "fixture", name: "openai-english-short" });
    const { pieces, error } = await collect(generatorFor(), conformanceRequest);
    expect(error).toBeUndefined();
    expect(pieces.join("")).toBe("Hello! I'm the support bot. How can I help you today?");
    // The role chunk's empty content and the finish chunk's empty delta are not pieces.
    expect(pieces).toHaveLength(14);
  });

  test("passes a <think> block split across chunks through untouched (the pipeline removes it)", async () => {
    server.setScenario({ kind: "fixture", name: "ollama-think-chinese" });
    const { pieces, error } = await collect(generatorFor(), conformanceRequest);
    expect(error).toBeUndefined();
    const text = pieces.join("");
    expect(text).toMatch(/^<think>\n用户问北京今天的天气.*\n<\/think>\n\n抱歉/s);
    expect(text.endsWith("建议您查看中国天气网或手机上的天气应用。")).toBe(true);
  });

  test("never yields DeepSeek's reasoning_content, only the answer", async () => {
    server.setScenario({ kind: "fixture", name: "deepseek-reasoner" });
    const { pieces, error } = await collect(generatorFor(), conformanceRequest);
    expect(error).toBeUndefined();
    expect(pieces.join("")).toBe("1 + 1 = **2**。");
  });

  test("a stream of reasoning only is an empty answer, hence GeneratorError", async () => {
    server.setScenario({ kind: "text", text: "", reasoning: "Let me think about this for a long time…" });
    const { pieces, error } = await collect(generatorFor(), conformanceRequest);
    expect(pieces).toEqual([]);
    expect(error).toBeInstanceOf(GeneratorError);
    expect((error as Error).message).toMatch(/no text/);
  });

  test("a wrong key is GeneratorError 401 with the provider's message", async () => {
    const guarded = await startFakeOpenAi({ apiKey: "the-right-key" });
    try {
      const generator = createOpenAiGenerator({ baseURL: guarded.url, apiKey: "a-wrong-key", model: MODEL });
      const { error } = await collect(generator, conformanceRequest);
      expect(error).toBeInstanceOf(GeneratorError);
      expect((error as GeneratorError).status).toBe(401);
      expect((error as Error).message).toContain("Incorrect API key");
      // The key itself never appears in the error.
      expect((error as Error).message).not.toContain("a-wrong-key");
    } finally {
      await guarded.close();
    }
  });

  test("a 500 is GeneratorError 500 and is not retried", async () => {
    server.setScenario({ kind: "error", status: 500 });
    const before = server.requests.length;
    const { error } = await collect(generatorFor(), conformanceRequest);
    expect((error as GeneratorError).status).toBe(500);
    expect(server.requests.length - before).toBe(1);
  });

  test("an error object inside a 200 stream is GeneratorError", async () => {
    server.setScenario({
      kind: "stream-error",
      text: "Partial ",
      message: "Output data may contain inappropriate content.",
    });
    const { pieces, error } = await collect(generatorFor(), conformanceRequest);
    expect(pieces).toEqual(["Partial "]);
    expect(error).toBeInstanceOf(GeneratorError);
    expect((error as Error).message).toContain("inappropriate content");
  });

  test("a connection dropped mid-stream is GeneratorError, not a short answer", async () => {
    server.setScenario({ kind: "disconnect", text: "Half an ans" });
    const { pieces, error } = await collect(generatorFor(), conformanceRequest);
    expect(pieces.join("")).toBe("Half an ans");
    expect(error).toBeInstanceOf(GeneratorError);
  });

  test("an unreachable server is GeneratorError naming the base URL", async () => {
    const closed = await startFakeOpenAi();
    const url = closed.url;
    await closed.close();
    const generator = createOpenAiGenerator({ baseURL: url, apiKey: API_KEY, model: MODEL });
    const { error } = await collect(generator, conformanceRequest);
    expect(error).toBeInstanceOf(GeneratorError);
    expect((error as Error).message).toContain(url);
  });

  test("an abort during a stall closes the upstream connection", async () => {
    server.setScenario({ kind: "stall", text: "…" });
    const before = server.requests.length;
    const controller = new AbortController();
    const pending = collect(generatorFor(), conformanceRequest, controller.signal);
    await vi.waitFor(() => expect(server.requests.length).toBe(before + 1));
    controller.abort(new Error("idle timeout"));
    const { error } = await pending;
    expect((error as Error).message).toBe("aborted");
    await vi.waitFor(() => expect(server.requests[before]?.disconnected).toBe(true));
  });

  test("timeoutMs bounds the wait for the response headers", async () => {
    // A raw socket server that accepts and never answers.
    const { createServer } = await import("node:net");
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as { port: number };
    try {
      const generator = createOpenAiGenerator({
        baseURL: `http://127.0.0.1:${port}/v1`,
        model: MODEL,
        timeoutMs: 200,
      });
      const started = performance.now();
      const { error } = await collect(generator, conformanceRequest);
      expect(performance.now() - started).toBeLessThan(2000);
      expect(error).toBeInstanceOf(GeneratorError);
      expect((error as Error).message).toMatch(/within 200 ms/);
    } finally {
      silent.close();
    }
  });
});

describe("buildMessages", () => {
  test("omits an empty system prompt", () => {
    expect(buildMessages({ ...conformanceRequest, systemPrompt: "", history: [] })).toEqual([
      { role: "user", content: conformanceRequest.message },
    ]);
  });
});
