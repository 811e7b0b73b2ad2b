/**
 * The `openai` generator: any OpenAI-compatible Chat Completions endpoint (OpenAI, DeepSeek,
 * Qwen/DashScope compatible mode, Moonshot, Ollama, vLLM …) through the official `openai` SDK,
 * streamed with `stream: true`.
 *
 * The SDK is imported by the first reply, not at start: it costs about 12 MB of resident memory,
 * which an idle bridge (or one whose bots use another generator) should not hold.
 *
 * @example
 * const generator = createOpenAiGenerator({ baseURL: "https://api.deepseek.com/v1", apiKey, model: "deepseek-chat" });
 * for await (const piece of generator.generate(request, signal)) process.stdout.write(piece);
 */
import type OpenAI from "openai";
import type { ChatCompletionChunk, ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { abortedError } from "../abort.ts";
import { type GenerationRequest, GeneratorError, type ReplyGenerator } from "../types.ts";

export interface OpenAiGeneratorOptions {
  /** Base URL including the version path, e.g. `https://api.deepseek.com/v1`. Default: OpenAI's. */
  baseURL?: string | undefined;
  /**
   * Bearer key. Local servers (Ollama, vLLM without `--api-key`) need none; a placeholder is sent
   * then, because the SDK refuses to run without a key and those servers ignore the header.
   */
  apiKey?: string | undefined;
  model: string;
  /**
   * How long to wait for the response headers. The SDK clears its timer once the headers arrive;
   * silence during the stream is the reply pipeline's idle timeout's business. Default 60 s.
   */
  timeoutMs?: number | undefined;
  /** Sampling temperature; omitted from the request (provider default) when undefined. */
  temperature?: number | undefined;
  /** Upper bound of generated tokens; omitted when undefined. */
  maxTokens?: number | undefined;
  /** Injectable for tests. */
  fetch?: typeof fetch | undefined;
  /**
   * Ask for `stream_options: {include_usage: true}` (default true). OpenAI, DeepSeek, Qwen,
   * vLLM and Ollama's OpenAI endpoint accept it; turn it off for a server that refuses the field.
   */
  includeUsage?: boolean | undefined;
}

export const DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1";
/** Sent when no key is configured; Ollama's documentation uses the same convention ("ollama"). */
export const PLACEHOLDER_API_KEY = "not-needed";
const DEFAULT_TIMEOUT_MS = 60_000;

export function createOpenAiGenerator(options: OpenAiGeneratorOptions): ReplyGenerator {
  const baseURL = options.baseURL ?? DEFAULT_OPENAI_BASE_URL;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let loading: Promise<{ sdk: OpenAiModule; client: OpenAI }> | undefined;
  const load = () =>
    (loading ??= import("openai").then((sdk) => ({
      sdk,
      client: new sdk.default({
        // Explicit values everywhere: the SDK would otherwise read OPENAI_API_KEY/OPENAI_BASE_URL from
        // the environment itself, and configuration is read in one place only (src/config).
        baseURL,
        apiKey: options.apiKey ?? PLACEHOLDER_API_KEY,
        timeout: timeoutMs,
        // No SDK retries. Its back-off sleep does not watch the abort signal, so an aborted reply could
        // linger for seconds (up to a minute with Retry-After) before noticing, which breaks the
        // "stop promptly" contract; and the pipeline already bounds a reply with its idle and total
        // timeouts and tells the user when it failed. A failure is reported at once instead.
        maxRetries: 0,
        ...(options.fetch ? { fetch: options.fetch } : {}),
      }),
    })));

  return {
    name: "openai",
    async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<string> {
      if (signal.aborted) throw abortedError(signal);
      // Outside the try below: an SDK that cannot be loaded keeps its own message instead of
      // reading like a failure of the endpoint.
      const { sdk, client } = await load();
      let produced = 0;
      try {
        const stream = await client.chat.completions.create(
          {
            model: options.model,
            messages: buildMessages(request),
            stream: true,
            // The last chunk then carries the request's token counts (usage page, daily budgets).
            ...(options.includeUsage === false ? {} : { stream_options: { include_usage: true } }),
            ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
            ...(options.maxTokens === undefined ? {} : { max_tokens: options.maxTokens }),
          },
          { signal },
        );
        for await (const chunk of stream) {
          // Pieces already buffered by the SDK must not reach the caller once it gave up.
          if (signal.aborted) break;
          if (chunk.usage && request.reportUsage) {
            request.reportUsage({
              promptTokens: chunk.usage.prompt_tokens ?? 0,
              completionTokens: chunk.usage.completion_tokens ?? 0,
            });
          }
          const piece = contentOf(chunk);
          if (piece) {
            produced += piece.length;
            yield piece;
          }
        }
      } catch (error) {
        throw toGeneratorError(error, sdk, signal, baseURL, timeoutMs);
      }
      // SDK 6 ends the iteration quietly when the request is aborted mid-stream (it treats an abort
      // as the caller's own choice). Without this check a cut-off answer would look complete.
      if (signal.aborted) throw abortedError(signal);
      // Typical causes: a reasoning model that spent its whole budget on reasoning_content, or a
      // gateway that answered 200 with nothing. Either way the user must get an error, not silence.
      if (produced === 0) throw new GeneratorError("the model returned no text");
    },
  };
}

/** System prompt, then the earlier turns oldest first, then the message being answered. */
export function buildMessages(request: GenerationRequest): ChatCompletionMessageParam[] {
  const messages: ChatCompletionMessageParam[] = [];
  if (request.systemPrompt) messages.push({ role: "system", content: request.systemPrompt });
  for (const turn of request.history) messages.push({ role: turn.role, content: turn.content });
  // A picture with BOT_VISION: content parts (text placeholder + image), else the text.
  messages.push({
    role: "user",
    content: request.messageContent?.length
      ? (request.messageContent as Extract<ChatCompletionMessageParam, { role: "user" }>["content"])
      : request.message,
  });
  return messages;
}

/**
 * The answer text of one chunk. `delta.reasoning_content` (DeepSeek-R1, Qwen3 thinking, vLLM's
 * reasoning parser) is deliberately ignored: reasoning must never reach users. Reasoning inlined
 * in `content` as `<think>…</think>` is passed on and removed by the pipeline's think filter.
 */
function contentOf(chunk: ChatCompletionChunk): string | undefined {
  // Usage-only chunks (stream_options.include_usage) carry an empty `choices` array.
  const content: unknown = chunk.choices?.[0]?.delta?.content;
  return typeof content === "string" ? content : undefined;
}

type OpenAiModule = typeof import("openai");

function toGeneratorError(
  error: unknown,
  { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError }: OpenAiModule,
  signal: AbortSignal,
  baseURL: string,
  timeoutMs: number,
): GeneratorError {
  if (error instanceof GeneratorError) return error;
  // Whatever broke after the caller aborted is a consequence of the abort.
  if (signal.aborted || error instanceof APIUserAbortError) return abortedError(signal);
  if (error instanceof APIConnectionTimeoutError) {
    return new GeneratorError(`no response from ${baseURL} within ${timeoutMs} ms`, undefined, { cause: error });
  }
  if (error instanceof APIConnectionError) {
    const cause = (error.cause as Error | undefined)?.message;
    return new GeneratorError(`could not reach ${baseURL}${cause ? `: ${cause}` : ""}`, undefined, { cause: error });
  }
  if (error instanceof APIError) {
    // With a status: the HTTP answer was an error. Without: an `{"error": …}` object inside the
    // stream, which some providers (DashScope, vLLM) send after a 200 when generation fails.
    const message =
      error.status === undefined ? `upstream error in stream: ${error.message}` : `upstream answered ${error.message}`;
    return new GeneratorError(message, error.status, { cause: error });
  }
  if (error instanceof SyntaxError) {
    return new GeneratorError("upstream sent a chunk that is not JSON", undefined, { cause: error });
  }
  // For example undici's "terminated" when the connection drops in the middle of the stream.
  const message = error instanceof Error ? error.message : String(error);
  return new GeneratorError(`stream failed: ${message}`, undefined, { cause: error });
}
