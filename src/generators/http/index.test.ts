import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { type ConformanceScenario, collect, conformanceRequest, runGeneratorConformance } from "../conformance.ts";
import { GeneratorError } from "../types.ts";
import { createHttpGenerator, type HttpGeneratorRequestBody, interpretData } from "./index.ts";

/**
 * A tiny fake of a site's streaming endpoint: it answers the next request with `exchange`, writing
 * each chunk as given (strings or raw bytes), `delayMs` apart, and records what it received.
 */
interface Exchange {
  status?: number;
  headers?: Record<string, string>;
  chunks: Array<string | Uint8Array>;
  delayMs?: number;
  /** Keep the response open after the last chunk (a stall, or a server that ignores [DONE]). */
  hang?: boolean;
  /** Drop the connection after the last chunk, without ending the response. */
  destroy?: boolean;
}

interface ReceivedExchange {
  headers: Record<string, string | string[] | undefined>;
  body: HttpGeneratorRequestBody;
  disconnected: boolean;
}

let server: Server;
let baseUrl: string;
let exchange: Exchange = { chunks: ["OK"] };
const received: ReceivedExchange[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    void answer(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const parts: Buffer[] = [];
  for await (const part of request) parts.push(part as Buffer);
  const record: ReceivedExchange = {
    headers: request.headers,
    body: JSON.parse(Buffer.concat(parts).toString("utf8")) as HttpGeneratorRequestBody,
    disconnected: false,
  };
  received.push(record);
  response.on("close", () => {
    if (!response.writableFinished) record.disconnected = true;
  });
  const current = exchange;
  response.writeHead(current.status ?? 200, current.headers ?? { "content-type": "text/plain; charset=utf-8" });
  response.flushHeaders();
  for (const chunk of current.chunks) {
    if (current.delayMs) await new Promise((resolve) => setTimeout(resolve, current.delayMs));
    if (response.destroyed) return;
    response.write(chunk);
  }
  if (current.destroy) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    response.socket?.destroy();
  } else if (!current.hang) response.end();
}

const SSE = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" };
const sse = (data: string) => `data: ${data}\n\n`;

function splitEvenly(text: string, count: number): string[] {
  const characters = [...text];
  const size = Math.ceil(characters.length / count);
  const pieces: string[] = [];
  for (let start = 0; start < characters.length; start += size) {
    pieces.push(characters.slice(start, start + size).join(""));
  }
  return pieces;
}

/** The conformance scenarios as SSE with `{"delta": …}` events, or as plain chunked text. */
function toExchange(scenario: ConformanceScenario, format: "sse" | "plain"): Exchange {
  const headers = format === "sse" ? SSE : { "content-type": "text/plain; charset=utf-8" };
  const encode = (piece: string) => (format === "sse" ? sse(JSON.stringify({ delta: piece })) : piece);
  switch (scenario.kind) {
    case "text": {
      const chunks = splitEvenly(scenario.text, scenario.pieces).map(encode);
      if (format === "sse") chunks.push(sse("[DONE]"));
      return { headers, chunks, delayMs: scenario.delayMs };
    }
    case "stall":
      return { headers, chunks: [encode(scenario.text)], hang: true };
    case "failure":
      return {
        status: scenario.status,
        headers: { "content-type": "application/json" },
        chunks: [JSON.stringify({ error: { message: `failed with ${scenario.status}` } })],
      };
    case "empty":
      return { headers, chunks: format === "sse" ? [": nothing to say\n\n", sse("[DONE]")] : [] };
  }
}

for (const format of ["sse", "plain"] as const) {
  runGeneratorConformance(`http (${format === "sse" ? "text/event-stream" : "text/plain"})`, {
    capabilities: { echoesUpstreamText: true, upstreamFailures: true, recordsRequests: true },
    setup(scenario) {
      exchange = toExchange(scenario, format);
      const first = received.length;
      return {
        generator: createHttpGenerator({ url: `${baseUrl}/bot/stream` }),
        received: () =>
          received.slice(first).map(({ body }) => ({
            message: body.message,
            history: body.history,
            systemPrompt: body.system_prompt,
          })),
      };
    },
  });
}

async function run(next: Exchange, url = `${baseUrl}/bot/stream`) {
  exchange = next;
  return collect(createHttpGenerator({ url }), conformanceRequest);
}

describe("http generator: the request", () => {
  test("POSTs the documented JSON body and headers", async () => {
    const before = received.length;
    const generator = createHttpGenerator({
      url: `${baseUrl}/bot/stream?site=main`,
      headers: { "X-Bridge-Key": "secret-key" },
    });
    exchange = { chunks: ["OK"] };
    await collect(generator, conformanceRequest);
    const request = received[before];
    expect(request?.body).toEqual({
      user_id: "site-user-42",
      accid: "u_site_user_42",
      message: conformanceRequest.message,
      history: conformanceRequest.history,
      system_prompt: conformanceRequest.systemPrompt,
    });
    expect(request?.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(request?.headers.accept).toContain("text/event-stream");
    expect(request?.headers["x-bridge-key"]).toBe("secret-key");
  });

  test("sends user_id null when the site user is unknown", async () => {
    const before = received.length;
    exchange = { chunks: ["OK"] };
    await collect(createHttpGenerator({ url: baseUrl }), { ...conformanceRequest, userId: undefined });
    expect(received[before]?.body.user_id).toBeNull();
  });

  test("turns credentials in the URL into HTTP Basic authentication", async () => {
    const before = received.length;
    const { error } = await run({ chunks: ["OK"] }, baseUrl.replace("http://", "http://im-bridge:p%40ss@"));
    expect(error).toBeUndefined();
    const expected = `Basic ${Buffer.from("im-bridge:p@ss").toString("base64")}`;
    expect(received[before]?.headers.authorization).toBe(expected);
  });
});

describe("http generator: text/event-stream", () => {
  test("accepts plain text, JSON strings and every documented JSON shape in data", async () => {
    const { pieces, error } = await run({
      headers: SSE,
      chunks: [
        sse("plain "),
        sse(JSON.stringify({ delta: "delta " })),
        sse(JSON.stringify({ content: "content " })),
        sse(JSON.stringify({ text: "text " })),
        sse(JSON.stringify("json-string ")),
        sse(JSON.stringify({ choices: [{ index: 0, delta: { content: "openai " }, finish_reason: null }] })),
        sse(JSON.stringify({ choices: [{ index: 0, delta: { reasoning_content: "hidden" }, finish_reason: null }] })),
        sse(JSON.stringify({ reasoning_content: "hidden too" })),
        sse(JSON.stringify({ usage: { total_tokens: 5 } })),
        sse("{not json} "),
        sse(JSON.stringify({ delta: "末尾" })),
        sse("[DONE]"),
      ],
    });
    expect(error).toBeUndefined();
    expect(pieces.join("")).toBe("plain delta content text json-string openai {not json} 末尾");
  });

  test("joins multi-line data with \\n, skips comments and named events, handles \\r\\n", async () => {
    const { pieces, error } = await run({
      headers: SSE,
      chunks: [": keep-alive\r\n\r\n", "data: 第一行\r\ndata: second line\r\n\r\n", "event: ping\r\ndata: {}\r\n\r\n"],
    });
    expect(error).toBeUndefined();
    expect(pieces).toEqual(["第一行\nsecond line"]);
  });

  test("reassembles events and characters split anywhere across network chunks", async () => {
    const stream = `${sse(JSON.stringify({ delta: "你好，" }))}data: world 🙂\r\n\r\n${sse("[DONE]")}`;
    const bytes = Buffer.from(stream, "utf8");
    // Cut into 3-byte pieces: through JSON, through multi-byte characters and between \r and \n.
    const chunks: Uint8Array[] = [];
    for (let start = 0; start < bytes.length; start += 3) chunks.push(bytes.subarray(start, start + 3));
    const { pieces, error } = await run({ headers: SSE, chunks, delayMs: 1 });
    expect(error).toBeUndefined();
    expect(pieces.join("")).toBe("你好，world 🙂");
  });

  test("ends at data: [DONE] even when the server keeps the connection open", async () => {
    const before = received.length;
    const started = performance.now();
    const { pieces, error } = await run({ headers: SSE, chunks: [sse("done soon"), sse("[DONE]")], hang: true });
    expect(error).toBeUndefined();
    expect(pieces).toEqual(["done soon"]);
    expect(performance.now() - started).toBeLessThan(1000);
    // Stopping at [DONE] releases the connection.
    await vi.waitFor(() => expect(received[before]?.disconnected).toBe(true));
  });

  test("keeps the last event when the stream ends without a blank line or [DONE]", async () => {
    const { pieces } = await run({ headers: SSE, chunks: ["data: one\n\n", "data: two"] });
    expect(pieces.join("")).toBe("onetwo");
  });

  test("event: error is GeneratorError with the upstream's message", async () => {
    const { pieces, error } = await run({
      headers: SSE,
      chunks: [sse("Partial"), `event: error\ndata: ${JSON.stringify({ message: "model overloaded" })}\n\n`],
    });
    expect(pieces).toEqual(["Partial"]);
    expect(error).toBeInstanceOf(GeneratorError);
    expect((error as Error).message).toContain("model overloaded");
  });

  test("a data object with only an error is GeneratorError", async () => {
    const { error } = await run({ headers: SSE, chunks: [sse(JSON.stringify({ error: { message: "quota" } }))] });
    expect(error).toBeInstanceOf(GeneratorError);
    expect((error as Error).message).toContain("quota");
  });
});

describe("http generator: other bodies", () => {
  test("plain chunked text keeps a multi-byte character split across chunks intact", async () => {
    const bytes = Buffer.from("你好世界", "utf8"); // 3 bytes per character
    const { pieces, error } = await run({
      chunks: [bytes.subarray(0, 4), bytes.subarray(4, 8), bytes.subarray(8)],
      delayMs: 20,
    });
    expect(error).toBeUndefined();
    expect(pieces.join("")).toBe("你好世界");
    expect(pieces.every((piece) => !piece.includes("\uFFFD"))).toBe(true);
    expect(pieces.length).toBeGreaterThan(1);
  });

  test("Django's default text/html is read as the answer text", async () => {
    const { pieces } = await run({ headers: { "content-type": "text/html; charset=utf-8" }, chunks: ["Hi ", "there"] });
    expect(pieces.join("")).toBe("Hi there");
  });

  test("decodes the declared charset (GBK)", async () => {
    const gbk = Uint8Array.from([0xc4, 0xe3, 0xba, 0xc3]); // 你好
    const { pieces } = await run({ headers: { "content-type": "text/plain; charset=gbk" }, chunks: [gbk] });
    expect(pieces.join("")).toBe("你好");
  });

  test("application/json carries the whole answer", async () => {
    const { pieces } = await run({
      headers: { "content-type": "application/json" },
      chunks: [JSON.stringify({ text: "一次性回答 whole answer" })],
    });
    expect(pieces).toEqual(["一次性回答 whole answer"]);
  });

  test("application/x-ndjson lines (Ollama's native API) stream their text", async () => {
    const lines = [
      { model: "qwen2.5", message: { role: "assistant", content: "逐行" }, done: false },
      { model: "qwen2.5", message: { role: "assistant", content: " lines" }, done: false },
      { model: "qwen2.5", message: { role: "assistant", content: "" }, done: true },
    ];
    const body = `${lines.map((line) => JSON.stringify(line)).join("\n")}\n`;
    const { pieces } = await run({
      headers: { "content-type": "application/x-ndjson" },
      chunks: [body.slice(0, 30), body.slice(30)],
    });
    expect(pieces.join("")).toBe("逐行 lines");
  });
});

describe("http generator: failures", () => {
  test("a 500 with a JSON error body is GeneratorError 500 with its message", async () => {
    const { error } = await run({
      status: 500,
      headers: { "content-type": "application/json" },
      chunks: [JSON.stringify({ error: "generate_stream_response crashed" })],
    });
    expect(error).toBeInstanceOf(GeneratorError);
    expect((error as GeneratorError).status).toBe(500);
    expect((error as Error).message).toContain("generate_stream_response crashed");
  });

  test("an HTML error page is named, not quoted", async () => {
    const { error } = await run({
      status: 403,
      headers: { "content-type": "text/html" },
      chunks: ["<!DOCTYPE html><html><body>CSRF verification failed.</body></html>"],
    });
    expect((error as GeneratorError).status).toBe(403);
    expect((error as Error).message).toContain("an HTML page");
  });

  test("a redirect (a login page) is GeneratorError, not followed", async () => {
    const before = received.length;
    const { pieces, error } = await run({
      status: 302,
      headers: { location: "/accounts/login/?next=/bot" },
      chunks: [],
    });
    expect(pieces).toEqual([]);
    expect((error as GeneratorError).status).toBe(302);
    expect((error as Error).message).toContain("/accounts/login/");
    expect(received.length - before).toBe(1);
  });

  test("credentials and query never appear in error messages", async () => {
    const { error } = await run(
      { status: 502, chunks: [] },
      baseUrl.replace("http://", "http://user:hunter2@") + "/bot?key=topsecret",
    );
    expect((error as Error).message).toContain("/bot");
    expect((error as Error).message).not.toMatch(/hunter2|topsecret/);
  });

  test.each(["sse", "plain"] as const)("a %s connection dropped mid-answer is GeneratorError", async (format) => {
    const chunks = format === "sse" ? [sse("Half an ")] : ["Half an "];
    const { pieces, error } = await run({ headers: format === "sse" ? SSE : undefined, chunks, destroy: true });
    expect(pieces.join("")).toBe("Half an ");
    expect(error).toBeInstanceOf(GeneratorError);
  });

  test("an unreachable endpoint is GeneratorError", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/bot`;
    await new Promise((resolve) => closed.close(resolve));
    const { error } = await collect(createHttpGenerator({ url }), conformanceRequest);
    expect(error).toBeInstanceOf(GeneratorError);
    expect((error as Error).message).toContain("could not reach");
  });

  test("timeoutMs bounds the wait for the response headers", async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/bot`;
    try {
      const started = performance.now();
      const { error } = await collect(createHttpGenerator({ url, timeoutMs: 200 }), conformanceRequest);
      expect(performance.now() - started).toBeLessThan(2000);
      expect((error as Error).message).toMatch(/within 200 ms/);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  test("an abort closes the upstream connection", async () => {
    const before = received.length;
    exchange = { headers: SSE, chunks: [sse("waiting")], hang: true };
    const controller = new AbortController();
    const pending = collect(createHttpGenerator({ url: baseUrl }), conformanceRequest, controller.signal);
    await vi.waitFor(() => expect(received.length).toBe(before + 1));
    controller.abort(new Error("idle timeout"));
    const { error } = await pending;
    expect((error as Error).message).toBe("aborted");
    await vi.waitFor(() => expect(received[before]?.disconnected).toBe(true));
  });
});

describe("interpretData", () => {
  test.each([
    ["[DONE]", { kind: "done" }],
    [" [DONE] ", { kind: "done" }],
    ["hello", { kind: "text", text: "hello" }],
    [" leading space kept", { kind: "text", text: " leading space kept" }],
    ['{"delta":{"content":"nested"}}', { kind: "text", text: "nested" }],
    ['{"response":"ollama generate"}', { kind: "text", text: "ollama generate" }],
    ['{"choices":[{"text":"legacy completion"}]}', { kind: "text", text: "legacy completion" }],
    ['{"error":"boom"}', { kind: "error", message: "boom" }],
    ['{"error":null,"delta":"fine"}', { kind: "text", text: "fine" }],
    ['{"type":"metadata"}', { kind: "nothing" }],
    ["42", { kind: "text", text: "42" }],
  ])("%j", (data, expected) => {
    expect(interpretData(data)).toEqual(expected);
  });
});
