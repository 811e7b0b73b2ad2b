/**
 * A fake OpenAI-compatible server for tests and local runs: `POST /v1/chat/completions` on
 * 127.0.0.1 (a free port), speaking the real wire protocol. With `stream: true` it answers
 * `text/event-stream` with `data: {chat.completion.chunk}` events and a final `data: [DONE]`;
 * without it, one `chat.completion` object. Errors use OpenAI's error body shape.
 *
 * What it answers is set by a scenario: a recorded fixture from ./fixtures/*.chunks.txt replayed
 * event by event, a scripted text split into pieces, an HTTP error, a stall, an error inside the
 * stream or a dropped connection. Every request is recorded (headers and JSON body) so tests can
 * assert the model, the messages and the Bearer key.
 *
 * @example
 * const server = await startFakeOpenAi({ scenario: { kind: "text", text: "Hi there", pieces: 2 } });
 * const generator = createOpenAiGenerator({ baseURL: server.url, apiKey: "test-key", model: "test-model" });
 * // … server.requests[0].body.messages …
 * await server.close();
 */
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type FakeOpenAiScenario =
  /** Replays ./fixtures/<name>.chunks.txt, one SSE event per write, `delayMs` apart (default 5). */
  | { kind: "fixture"; name: string; delayMs?: number }
  /**
   * Streams `text` in `pieces` nearly equal pieces (default 4), `delayMs` apart (default 5). An
   * empty text sends only the role and finish chunks: a stream without content. `reasoning`, if
   * given, is first streamed as DeepSeek-style `reasoning_content` deltas.
   */
  | { kind: "text"; text: string; pieces?: number; delayMs?: number; reasoning?: string }
  /** Answers `status` with an OpenAI error body (or `body` verbatim when given). */
  | { kind: "error"; status: number; message?: string; body?: unknown }
  /** Sends the headers and one chunk with `text` (default "Thinking"), then nothing until the client leaves. */
  | { kind: "stall"; text?: string }
  /** Streams `text`, then `data: {"error": {...}}` and ends, as providers do when generation fails after a 200. */
  | { kind: "stream-error"; text: string; message?: string }
  /** Streams `text`, then destroys the socket without finishing the response. */
  | { kind: "disconnect"; text: string }
  /**
   * Streams `before`, goes quiet for `pauseMs` (the connection stays open, nothing is written),
   * then streams `after` and finishes normally: a model that thinks mid-answer. Each part in
   * `pieces` pieces (default 2), `delayMs` apart (default 5).
   */
  | { kind: "pause"; before: string; pauseMs: number; after: string; pieces?: number; delayMs?: number };

export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. `/v1/chat/completions`. */
  path: string;
  /** Lower-cased header names, as node:http gives them. */
  headers: Record<string, string>;
  /** The parsed JSON body (undefined when it was not JSON). */
  body: ChatCompletionRequestBody | undefined;
  /** Set once the server finished its answer. */
  completed: boolean;
  /** Set when the client went away before the answer was complete (an abort). */
  disconnected: boolean;
}

export interface ChatCompletionRequestBody {
  model: string;
  messages: Array<{ role: string; content: string }>;
  stream?: boolean;
  [field: string]: unknown;
}

export interface FakeOpenAiOptions {
  scenario?: FakeOpenAiScenario;
  /** When set, requests without `Authorization: Bearer <apiKey>` get OpenAI's 401 `invalid_api_key`. */
  apiKey?: string;
}

export interface FakeOpenAi {
  /** Base URL including `/v1`, ready for `baseURL` / OPENAI_BASE_URL. */
  readonly url: string;
  /** Every request received, oldest first. */
  readonly requests: RecordedRequest[];
  /** Sets the answer of the following requests. */
  setScenario(scenario: FakeOpenAiScenario): void;
  /** Closes the server and every open connection (stalled streams included). */
  close(): Promise<void>;
}

const FIXTURES_DIRECTORY = new URL("./fixtures/", import.meta.url);
const DEFAULT_SCENARIO: FakeOpenAiScenario = { kind: "text", text: "Hello from the fake OpenAI server.", pieces: 4 };

/** Names of the recorded streams in ./fixtures, without `.chunks.txt`. */
export function listFixtures(): string[] {
  return readdirSync(FIXTURES_DIRECTORY)
    .filter((file) => file.endsWith(".chunks.txt"))
    .map((file) => file.slice(0, -".chunks.txt".length))
    .sort();
}

/** The SSE events of a fixture, each as written on the wire without its trailing blank line. */
export function readFixtureEvents(name: string): string[] {
  const text = readFileSync(new URL(`${name}.chunks.txt`, FIXTURES_DIRECTORY), "utf8");
  return text
    .split(/\r?\n\r?\n/)
    .map((event) => event.trim())
    .filter((event) => event !== "");
}

export async function startFakeOpenAi(options: FakeOpenAiOptions = {}): Promise<FakeOpenAi> {
  let scenario = options.scenario ?? DEFAULT_SCENARIO;
  const requests: RecordedRequest[] = [];
  let sequence = 0;

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      // A bug in the fake itself: make it visible in the test's output rather than hang.
      console.error("fake-openai failed", error);
      if (!response.headersSent) sendError(response, 500, "fake-openai failed", "server_error");
      else response.destroy();
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const rawBody = await readBody(request);
    const recorded: RecordedRequest = {
      method: request.method ?? "",
      path: request.url ?? "",
      headers: flattenHeaders(request),
      body: parseJson(rawBody),
      completed: false,
      disconnected: false,
    };
    requests.push(recorded);
    response.on("close", () => {
      if (!response.writableFinished) recorded.disconnected = true;
    });
    response.on("finish", () => {
      recorded.completed = true;
    });

    const path = (request.url ?? "").split("?")[0];
    if (request.method !== "POST" || path !== "/v1/chat/completions") {
      sendError(response, 404, `Unknown request URL: ${request.method} ${path}`, "invalid_request_error");
      return;
    }
    if (options.apiKey !== undefined && recorded.headers.authorization !== `Bearer ${options.apiKey}`) {
      sendError(response, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");
      return;
    }
    const body = recorded.body;
    if (!body || typeof body.model !== "string" || !Array.isArray(body.messages)) {
      sendError(response, 400, "Request body must have model and messages.", "invalid_request_error");
      return;
    }

    const current = scenario;
    const id = `chatcmpl-fake-${++sequence}`;
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
      JSON.stringify({
        id,
        object: "chat.completion.chunk",
        created: Math.floor(Date.now() / 1000),
        model: body.model,
        system_fingerprint: "fp_fake",
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      });

    if (current.kind === "error") {
      if (current.body !== undefined) {
        response.writeHead(current.status, { "content-type": "application/json" });
        response.end(JSON.stringify(current.body));
        return;
      }
      const [type, code] = errorTypeOf(current.status);
      sendError(response, current.status, current.message ?? defaultErrorMessage(current.status), type, code);
      return;
    }

    if (body.stream !== true) {
      // Non-streaming callers get the same content as one chat.completion.
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: body.model,
          choices: [
            {
              index: 0,
              message: { role: "assistant", content: contentOfScenario(current) },
              logprobs: null,
              finish_reason: "stop",
            },
          ],
        }),
      );
      return;
    }

    response.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    response.flushHeaders();
    const stream = new EventWriter(response);

    switch (current.kind) {
      case "fixture": {
        for (const event of readFixtureEvents(current.name)) {
          if (!(await stream.writeRaw(event, current.delayMs ?? 5))) return;
        }
        response.end();
        return;
      }
      case "text": {
        const delayMs = current.delayMs ?? 5;
        if (!(await stream.write(chunk({ role: "assistant", content: "" }), 0))) return;
        for (const piece of splitEvenly(current.reasoning ?? "", current.pieces ?? 4)) {
          if (!(await stream.write(chunk({ content: null, reasoning_content: piece }), delayMs))) return;
        }
        for (const piece of splitEvenly(current.text, current.pieces ?? 4)) {
          if (!(await stream.write(chunk({ content: piece }), delayMs))) return;
        }
        if (!(await stream.write(chunk({}, "stop"), 0))) return;
        if (!(await stream.write("[DONE]", 0))) return;
        response.end();
        return;
      }
      case "stall": {
        await stream.write(chunk({ role: "assistant", content: current.text ?? "Thinking" }), 0);
        // Nothing more: the response stays open until the client leaves or close() is called.
        return;
      }
      case "stream-error": {
        if (!(await stream.write(chunk({ role: "assistant", content: current.text }), 0))) return;
        const error = { message: current.message ?? "The model failed mid-stream.", type: "server_error", code: null };
        if (!(await stream.write(JSON.stringify({ error }), 5))) return;
        response.end();
        return;
      }
      case "disconnect": {
        if (!(await stream.write(chunk({ role: "assistant", content: current.text }), 0))) return;
        await sleep(5);
        response.socket?.destroy();
        return;
      }
      case "pause": {
        const delayMs = current.delayMs ?? 5;
        if (!(await stream.write(chunk({ role: "assistant", content: "" }), 0))) return;
        for (const piece of splitEvenly(current.before, current.pieces ?? 2)) {
          if (!(await stream.write(chunk({ content: piece }), delayMs))) return;
        }
        // The pause is the delay of the first event after it: a client that left meanwhile ends it.
        let pauseMs = current.pauseMs;
        for (const piece of splitEvenly(current.after, current.pieces ?? 2)) {
          if (!(await stream.write(chunk({ content: piece }), pauseMs + delayMs))) return;
          pauseMs = 0;
        }
        if (!(await stream.write(chunk({}, "stop"), pauseMs))) return;
        if (!(await stream.write("[DONE]", 0))) return;
        response.end();
        return;
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    setScenario(next) {
      scenario = next;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}

/** Writes SSE events, each optionally after a pause; false once the client has gone. */
class EventWriter {
  constructor(private readonly response: ServerResponse) {}

  write(data: string, delayMs: number): Promise<boolean> {
    return this.writeRaw(`data: ${data}`, delayMs);
  }

  async writeRaw(event: string, delayMs: number): Promise<boolean> {
    if (delayMs > 0) await sleep(delayMs);
    if (this.response.destroyed || this.response.writableEnded) return false;
    this.response.write(`${event}\n\n`);
    return true;
  }
}

/** Splits into `count` pieces of nearly equal length, never inside a code point. */
export function splitEvenly(text: string, count: number): string[] {
  const characters = [...text];
  if (characters.length === 0) return [];
  const pieces = Math.max(1, Math.min(count, characters.length));
  const size = Math.ceil(characters.length / pieces);
  const result: string[] = [];
  for (let start = 0; start < characters.length; start += size) {
    result.push(characters.slice(start, start + size).join(""));
  }
  return result;
}

function contentOfScenario(scenario: FakeOpenAiScenario): string {
  switch (scenario.kind) {
    case "fixture":
      return readFixtureEvents(scenario.name)
        .filter((event) => event.startsWith("data: {"))
        .map((event) => {
          const parsed = JSON.parse(event.slice("data: ".length)) as {
            choices?: Array<{ delta?: { content?: string | null } }>;
          };
          return parsed.choices?.[0]?.delta?.content ?? "";
        })
        .join("");
    case "text":
    case "stream-error":
    case "disconnect":
      return scenario.text;
    case "stall":
      return scenario.text ?? "Thinking";
    case "pause":
      return scenario.before + scenario.after;
    case "error":
      return "";
  }
}

function sendError(
  response: ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null = null,
) {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify({ error: { message, type, param: null, code } }));
}

function errorTypeOf(status: number): [string, string | null] {
  if (status === 401) return ["invalid_request_error", "invalid_api_key"];
  if (status === 429) return ["requests", "rate_limit_exceeded"];
  if (status >= 500) return ["server_error", null];
  return ["invalid_request_error", null];
}

function defaultErrorMessage(status: number): string {
  if (status === 401) return "Incorrect API key provided.";
  if (status === 429) return "Rate limit reached for requests.";
  if (status >= 500) return "The server had an error while processing your request. Sorry about that!";
  return `Request failed with status ${status}.`;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

function parseJson(text: string): ChatCompletionRequestBody | undefined {
  try {
    return JSON.parse(text) as ChatCompletionRequestBody;
  } catch {
    return undefined;
  }
}

function flattenHeaders(request: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return headers;
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}
