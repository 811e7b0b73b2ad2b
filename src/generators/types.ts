/**
 * The reply generator contract. Imports no implementation: the reply pipeline depends on this,
 * and each generator (openai/, http/, demo/) lives in its own folder.
 */

export interface ChatTurn {
  role: "user" | "assistant";
  content: string;
}

export interface GenerationRequest {
  /** The site's user id when known (from the accounts table), else undefined. */
  userId: string | undefined;
  /** The user's NIM accid. */
  accid: string;
  /** The message being answered. */
  message: string;
  /** Earlier turns of the current context, oldest first (the message itself is not included). */
  history: ChatTurn[];
  systemPrompt: string;
  /**
   * Optional: the user's turn as OpenAI Chat Completions content parts (a picture with
   * BOT_VISION): an OpenAI-compatible generator sends these instead of `message`; others use
   * `message` (the text placeholder).
   */
  messageContent?: unknown[];
  /**
   * Optional: a generator that learns what the request cost (OpenAI's `usage` chunk with
   * `stream_options.include_usage`) reports it here, once. Generators that cannot know leave it
   * alone; the pipeline then stores an estimate (src/usage/estimate.ts).
   */
  reportUsage?: (usage: TokenUsage) => void;
  /**
   * Optional: a generator that knows its sources (retrieval, web search) reports them here, at any
   * time before its stream ends; the last report wins. In native stream mode they reach the user
   * as NIM's citations (`rag_info_list`); the custom mode ignores them. Absent when the pipeline
   * does not collect sources.
   */
  reportSources?: (sources: ReplySource[]) => void;
}

/** One citation of a reply, the fields of NIM's `rag_info_list` items (all optional). */
export interface ReplySource {
  name?: string;
  icon?: string;
  title?: string;
  /** ms since the epoch. */
  time?: number;
  url?: string;
  description?: string;
}

/** Tokens one generation cost, as the model counted them. */
export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

/**
 * Produces an answer as a stream of text pieces. Implementations stop promptly when `signal`
 * aborts (idle or total timeout) and throw GeneratorError on failure, never yield error text.
 * `<think>` blocks may be yielded; the pipeline removes them.
 */
export interface ReplyGenerator {
  readonly name: string;
  generate(request: GenerationRequest, signal: AbortSignal): AsyncIterable<string>;
}

export class GeneratorError extends Error {
  override readonly name = "GeneratorError";
  constructor(
    message: string,
    /** HTTP status of the upstream when there was one. */
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
