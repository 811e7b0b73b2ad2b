/**
 * The `http` generator: POSTs the request as JSON to an existing back end (for example a site's
 * Django view around its own `generate_stream_response()`) and streams the answer back. The exact
 * exchange is documented in docs/generators.md; keep the two in step.
 *
 * Accepted answers, chosen by the response's Content-Type:
 * - `text/event-stream`: SSE, each `data:` is plain text or JSON carrying the text (see `interpretData`),
 *   `data: [DONE]` ends, `event: error` fails.
 * - `application/x-ndjson` / `application/jsonl`: one such JSON object per line (e.g. Ollama's native API).
 * - `application/json`: one JSON object carrying the whole answer.
 * - anything else (`text/plain`, and Django's default `text/html`): the body is the answer, streamed as it arrives.
 *
 * @example
 * const generator = createHttpGenerator({ url: "https://bridge:secret@www.example.com/api/bot/stream" });
 */
import { abortedError } from "../abort.ts";
import { type GenerationRequest, GeneratorError, type ReplyGenerator } from "../types.ts";
import { type ServerSentEvent, ServerSentEventParser } from "./sse-parser.ts";

export interface HttpGeneratorOptions {
  /**
   * The endpoint. Credentials in the URL (`https://user:password@host/path`) are sent as HTTP Basic
   * authentication, because fetch refuses URLs with credentials and the URL is the only setting
   * the environment has (`GENERATOR_HTTP_URL`).
   */
  url: string;
  /**
   * How long to wait for the response headers (connection included). Once they arrived, silence is
   * the reply pipeline's idle timeout's business. Default 60 s, the pipeline's default idle timeout,
   * so that a back end that only answers once its whole answer is ready still gets that long.
   */
  timeoutMs?: number | undefined;
  /** Extra request headers, e.g. `{ authorization: "Bearer …" }`; they win over the defaults. */
  headers?: Record<string, string> | undefined;
  /** Injectable for tests. */
  fetch?: typeof fetch | undefined;
}

/** The JSON body POSTed to the endpoint. snake_case, as a Python back end expects. */
export interface HttpGeneratorRequestBody {
  user_id: string | null;
  accid: string;
  message: string;
  history: Array<{ role: "user" | "assistant"; content: string }>;
  system_prompt: string;
}

const DEFAULT_TIMEOUT_MS = 60_000;
/** How much of an error response's body goes into the error message. */
const ERROR_BODY_LIMIT = 500;

export function createHttpGenerator(options: HttpGeneratorOptions): ReplyGenerator {
  const target = parseTarget(options.url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const fetchFunction = options.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    accept: "text/event-stream, text/plain;q=0.9, */*;q=0.5",
    ...(target.authorization ? { authorization: target.authorization } : {}),
    ...lowerCaseKeys(options.headers ?? {}),
  };

  return {
    name: "http",
    async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<string> {
      if (signal.aborted) throw abortedError(signal);
      const response = await post(request, signal);
      const body = response.body;
      if (!body) throw new GeneratorError(`${target.displayUrl} answered without a body`, response.status);

      const contentType = response.headers.get("content-type") ?? "";
      const mediaType = (contentType.split(";")[0] ?? "").trim().toLowerCase();
      const decoder = createDecoder(contentType);
      let produced = 0;
      try {
        const pieces =
          mediaType === "text/event-stream"
            ? readServerSentEvents(body, decoder, signal)
            : mediaType === "application/x-ndjson" || mediaType === "application/jsonl"
              ? readJsonLines(body, decoder, signal)
              : mediaType === "application/json" || mediaType.endsWith("+json")
                ? readJsonDocument(body, decoder, signal)
                : readText(body, decoder, signal);
        for await (const piece of pieces) {
          if (signal.aborted) break;
          if (piece.length === 0) continue;
          produced += piece.length;
          yield piece;
        }
      } catch (error) {
        if (signal.aborted) throw abortedError(signal);
        if (error instanceof GeneratorError) throw error;
        // For example undici's "terminated" when the back end drops the connection mid-answer.
        throw new GeneratorError(`stream from ${target.displayUrl} failed: ${messageOf(error)}`, undefined, {
          cause: error,
        });
      }
      if (signal.aborted) throw abortedError(signal);
      if (produced === 0) throw new GeneratorError(`${target.displayUrl} returned no text`);
    },
  };

  /** Sends the request; resolves with a 2xx response or throws GeneratorError. */
  async function post(request: GenerationRequest, signal: AbortSignal): Promise<Response> {
    const body: HttpGeneratorRequestBody = {
      // null rather than absent: the field is always there for the back end to read.
      user_id: request.userId ?? null,
      accid: request.accid,
      message: request.message,
      history: request.history.map((turn) => ({ role: turn.role, content: turn.content })),
      system_prompt: request.systemPrompt,
    };
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new Error("timeout")), timeoutMs);
    let response: Response;
    try {
      response = await fetchFunction(target.url, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.any([signal, timeout.signal]),
        // A redirect is nearly always a login page (Django's @login_required) whose HTML would
        // otherwise be streamed to the user as the answer; report it instead.
        redirect: "manual",
      });
    } catch (error) {
      if (signal.aborted) throw abortedError(signal);
      if (timeout.signal.aborted) {
        throw new GeneratorError(`no response from ${target.displayUrl} within ${timeoutMs} ms`, undefined, {
          cause: error,
        });
      }
      throw new GeneratorError(`could not reach ${target.displayUrl}: ${messageOf(error)}`, undefined, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
    if (response.status >= 200 && response.status < 300) return response;

    const location = response.headers.get("location");
    const detail =
      response.status >= 300 && response.status < 400
        ? `redirected to ${location ?? "(no location)"}; is the view behind a login?`
        : await errorDetail(response);
    if (signal.aborted) throw abortedError(signal);
    throw new GeneratorError(
      `${target.displayUrl} answered ${response.status}${detail ? `: ${detail}` : ""}`,
      response.status,
    );
  }
}

/** Reads the SSE stream and yields the text of each content event. */
async function* readServerSentEvents(
  body: ReadableStream<Uint8Array>,
  decoder: TextDecoder,
  signal: AbortSignal,
): AsyncGenerator<string> {
  const parser = new ServerSentEventParser();
  // Returning from here (on [DONE]) cancels the body through readChunks' finally, so a back end
  // that keeps the connection open after [DONE] does not hold the reply.
  for await (const chunk of readChunks(body, signal)) {
    for (const event of parser.push(decoder.decode(chunk, { stream: true }))) {
      const outcome = interpretEvent(event);
      if (outcome === "done") return;
      if (outcome) yield outcome;
    }
  }
  for (const event of parser.push(decoder.decode()).concat(parser.end())) {
    const outcome = interpretEvent(event);
    if (outcome === "done") return;
    if (outcome) yield outcome;
  }
}

/** One content event's text, "done" for the end marker, undefined for events without text. */
function interpretEvent(event: ServerSentEvent): string | "done" | undefined {
  switch (event.event) {
    case "error":
      throw new GeneratorError(`upstream reported an error: ${errorMessageOf(event.data)}`);
    case "done":
    case "end":
      return "done";
    case "message": {
      const outcome = interpretData(event.data);
      if (outcome.kind === "error") throw new GeneratorError(`upstream reported an error: ${outcome.message}`);
      return outcome.kind === "text" ? outcome.text : outcome.kind === "done" ? "done" : undefined;
    }
    default:
      // Other named events (ping, metadata, usage …) carry no answer text.
      return undefined;
  }
}

type DataOutcome =
  | { kind: "text"; text: string }
  | { kind: "done" }
  | { kind: "error"; message: string }
  | { kind: "nothing" };

/**
 * What one `data:` value (or one NDJSON line) says. JSON is recognised when the value is a JSON
 * string or object; anything else, including text that merely starts with "{", is plain text.
 * Objects: `{"delta": "…"}`, `{"content": "…"}`, `{"text": "…"}`, an OpenAI chunk
 * `{"choices": [{"delta": {"content": "…"}}]}`, Ollama's `{"message": {"content": "…"}}` or
 * `{"response": "…"}`; `{"error": …}` fails; an object with none of these (usage, metadata) is skipped.
 * Reasoning fields (`reasoning_content`, `reasoning`) are never read: they must not reach users.
 */
export function interpretData(data: string): DataOutcome {
  const trimmed = data.trim();
  if (trimmed === "[DONE]") return { kind: "done" };
  if (!trimmed.startsWith("{") && !trimmed.startsWith('"')) return { kind: "text", text: data };
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    return { kind: "text", text: data };
  }
  if (typeof parsed === "string") return { kind: "text", text: parsed };
  if (!isRecord(parsed)) return { kind: "text", text: data };
  const text = textOf(parsed);
  if (text !== undefined) return { kind: "text", text };
  if (parsed.error !== undefined && parsed.error !== null && parsed.error !== false) {
    return { kind: "error", message: errorMessageOf(parsed.error) };
  }
  return { kind: "nothing" };
}

function textOf(object: Record<string, unknown>): string | undefined {
  const { delta, content, text, response, message, choices } = object;
  if (typeof delta === "string") return delta;
  if (isRecord(delta)) {
    if (typeof delta.content === "string") return delta.content;
    if (typeof delta.text === "string") return delta.text;
  }
  if (typeof content === "string") return content;
  if (typeof text === "string") return text;
  if (typeof response === "string") return response;
  if (isRecord(message) && typeof message.content === "string") return message.content;
  if (Array.isArray(choices)) {
    const first: unknown = choices[0];
    if (isRecord(first)) {
      if (isRecord(first.delta)) return typeof first.delta.content === "string" ? first.delta.content : undefined;
      if (typeof first.text === "string") return first.text;
    }
  }
  return undefined;
}

/** A readable message from an error payload: a string, `{message}`, `{error: {message}}` or raw JSON. */
function errorMessageOf(value: unknown): string {
  let payload = value;
  if (typeof value === "string") {
    try {
      payload = JSON.parse(value);
    } catch {
      return truncate(value);
    }
  }
  if (typeof payload === "string") return truncate(payload);
  if (isRecord(payload)) {
    if (typeof payload.message === "string") return truncate(payload.message);
    if (typeof payload.detail === "string") return truncate(payload.detail);
    if (payload.error !== undefined) return errorMessageOf(payload.error);
  }
  return truncate(JSON.stringify(payload) ?? String(payload));
}

async function* readJsonLines(
  body: ReadableStream<Uint8Array>,
  decoder: TextDecoder,
  signal: AbortSignal,
): AsyncGenerator<string> {
  let pending = "";
  const linesOf = function* (final: boolean): Generator<string | "done"> {
    const lines = pending.split("\n");
    pending = final ? "" : (lines.pop() ?? "");
    for (const line of lines) {
      if (line.trim() === "") continue;
      const outcome = interpretData(line.replace(/\r$/, ""));
      if (outcome.kind === "error") throw new GeneratorError(`upstream reported an error: ${outcome.message}`);
      if (outcome.kind === "done") yield "done";
      if (outcome.kind === "text") yield outcome.text;
    }
  };
  for await (const chunk of readChunks(body, signal)) {
    pending += decoder.decode(chunk, { stream: true });
    for (const piece of linesOf(false)) {
      if (piece === "done") return;
      yield piece;
    }
  }
  pending += decoder.decode();
  for (const piece of linesOf(true)) {
    if (piece === "done") return;
    yield piece;
  }
}

async function* readJsonDocument(
  body: ReadableStream<Uint8Array>,
  decoder: TextDecoder,
  signal: AbortSignal,
): AsyncGenerator<string> {
  let document = "";
  for await (const chunk of readChunks(body, signal)) document += decoder.decode(chunk, { stream: true });
  document += decoder.decode();
  let parsed: unknown;
  try {
    parsed = JSON.parse(document);
  } catch (error) {
    throw new GeneratorError("upstream answered application/json that is not JSON", undefined, { cause: error });
  }
  const outcome = isRecord(parsed) || typeof parsed === "string" ? interpretData(JSON.stringify(parsed)) : undefined;
  if (outcome?.kind === "error") throw new GeneratorError(`upstream reported an error: ${outcome.message}`);
  if (outcome?.kind === "text") yield outcome.text;
}

/** Plain text: each chunk as it arrives. The streaming decoder keeps a split UTF-8 character whole. */
async function* readText(
  body: ReadableStream<Uint8Array>,
  decoder: TextDecoder,
  signal: AbortSignal,
): AsyncGenerator<string> {
  for await (const chunk of readChunks(body, signal)) yield decoder.decode(chunk, { stream: true });
  yield decoder.decode();
}

/**
 * The body's chunks. An abort cancels the pending read at once (fetch's own signal would too, but
 * an injected fetch may not honour it), and stopping early releases the connection.
 */
async function* readChunks(body: ReadableStream<Uint8Array>, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  const cancel = () => {
    reader.cancel(signal.reason).catch(() => {});
  };
  signal.addEventListener("abort", cancel, { once: true });
  try {
    while (true) {
      if (signal.aborted) throw abortedError(signal);
      const { value, done } = await reader.read();
      if (done) return;
      if (signal.aborted) throw abortedError(signal);
      if (value && value.byteLength > 0) yield value;
    }
  } finally {
    signal.removeEventListener("abort", cancel);
    reader.cancel().catch(() => {});
  }
}

/** Decoder for the response's charset (a Chinese site may still answer in GBK); UTF-8 otherwise. */
function createDecoder(contentType: string): TextDecoder {
  const charset = /charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType)?.[1];
  if (charset) {
    try {
      return new TextDecoder(charset);
    } catch {
      // An unknown label: UTF-8 is the only sensible guess.
    }
  }
  return new TextDecoder("utf-8");
}

/** A short description of an error response's body, for the error message. */
async function errorDetail(response: Response): Promise<string> {
  let text: string;
  try {
    text = await response.text();
  } catch {
    return "";
  }
  const trimmed = text.trim();
  if (trimmed === "") return "";
  if (trimmed.startsWith("{")) {
    try {
      return errorMessageOf(JSON.parse(trimmed));
    } catch {
      // Not JSON after all: fall through to the raw text.
    }
  }
  // An HTML error page says little in its first characters; say what it is instead.
  if (/^<(!doctype|html)/i.test(trimmed)) return "an HTML page";
  return truncate(trimmed);
}

interface Target {
  url: string;
  /** For error messages: no credentials, no query (which may hold a key). */
  displayUrl: string;
  authorization: string | undefined;
}

function parseTarget(address: string): Target {
  let parsed: URL;
  try {
    parsed = new URL(address);
  } catch (error) {
    throw new GeneratorError("the http generator's URL is not a URL", undefined, { cause: error });
  }
  let authorization: string | undefined;
  if (parsed.username || parsed.password) {
    const credentials = `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`;
    authorization = `Basic ${Buffer.from(credentials, "utf8").toString("base64")}`;
    parsed.username = "";
    parsed.password = "";
  }
  return { url: parsed.toString(), displayUrl: `${parsed.origin}${parsed.pathname}`, authorization };
}

function lowerCaseKeys(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).map(([key, value]) => [key.toLowerCase(), value]));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // undici's "fetch failed" hides the useful part (ECONNREFUSED …) in its cause.
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause ? `${error.message} (${cause})` : error.message;
}

function truncate(text: string): string {
  return text.length > ERROR_BODY_LIMIT ? `${text.slice(0, ERROR_BODY_LIMIT)}…` : text;
}
