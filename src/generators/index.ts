/**
 * Builds the configured reply generator. The only module that knows all three implementations;
 * the pipeline depends on ./types.ts alone. `Config["generator"]` (src/config) fits `GeneratorSettings`.
 *
 * @example
 * const generator = createGenerator(config.generator);
 */
import { createDemoGenerator } from "./demo/index.ts";
import { createHttpGenerator } from "./http/index.ts";
import { createOpenAiGenerator } from "./openai/index.ts";
import type { ReplyGenerator } from "./types.ts";

export type { DemoGeneratorOptions } from "./demo/index.ts";
export type { HttpGeneratorOptions } from "./http/index.ts";
export type { OpenAiGeneratorOptions } from "./openai/index.ts";
export { type ChatTurn, type GenerationRequest, GeneratorError, type ReplyGenerator } from "./types.ts";
export { createDemoGenerator, createHttpGenerator, createOpenAiGenerator };

export interface GeneratorSettings {
  kind: "openai" | "http" | "demo";
  /** OPENAI_BASE_URL; OpenAI's own API when unset. */
  openaiBaseUrl?: string | undefined;
  /** OPENAI_API_KEY; may be unset for local servers (Ollama, vLLM). */
  openaiApiKey?: string | undefined;
  /** OPENAI_MODEL. */
  openaiModel?: string | undefined;
  /** GENERATOR_HTTP_URL; required for `http`. */
  httpUrl?: string | undefined;
  /** Time to the response headers for `openai` and `http` (default 60 s). */
  timeoutMs?: number | undefined;
  /** Extra headers for the `http` generator. */
  httpHeaders?: Record<string, string> | undefined;
  /** Mean pause between the demo generator's pieces. */
  demoDelayMs?: number | undefined;
  /** Injectable for tests. */
  fetch?: typeof fetch | undefined;
}

/** Default model when none is configured; src/config has the same default. */
const DEFAULT_MODEL = "gpt-4o-mini";

export function createGenerator(settings: GeneratorSettings): ReplyGenerator {
  switch (settings.kind) {
    case "openai":
      return createOpenAiGenerator({
        baseURL: settings.openaiBaseUrl,
        apiKey: settings.openaiApiKey,
        model: settings.openaiModel ?? DEFAULT_MODEL,
        timeoutMs: settings.timeoutMs,
        fetch: settings.fetch,
      });
    case "http":
      // src/config already refuses BOT_GENERATOR=http without a URL; this guards other callers.
      if (!settings.httpUrl) throw new Error("GENERATOR_HTTP_URL is required for the http generator");
      return createHttpGenerator({
        url: settings.httpUrl,
        timeoutMs: settings.timeoutMs,
        headers: settings.httpHeaders,
        fetch: settings.fetch,
      });
    case "demo":
      return createDemoGenerator({ delayMs: settings.demoDelayMs });
    default: {
      const unknown: never = settings.kind;
      throw new Error(`unknown generator kind: ${String(unknown)}`);
    }
  }
}
