/**
 * NIM's v2 server API ("新版服务端 API", nim-protocol §5, §10.2): for now the one call im-bridge
 * needs, the stream-message chunk
 * `POST {openApiBase}/im/v2/conversations/{conversation_id}/messages/actions/stream_message`.
 *
 * Signed exactly like the classic API (AppKey, Nonce, CurTime in seconds, CheckSum), JSON body,
 * answered with the v2 envelope `{"code":200,"msg":"…","data":{…}}` (`msg`, not `desc`). Codes may
 * be classic (414, 416) or six-digit domain codes (102404 account not exist, 108404 team not exist,
 * 109404 not a team member, 107323 message rate limit, 1893xx stream states); every non-200 code is
 * a {@link NimError} of kind "api", retryable only for frequency control (416, 107323), and a
 * stream-message refusal is the typed {@link NimStreamMessageRefusedError}.
 *
 * Retry rule (shared with the classic client): a chunk is retried only where it cannot have
 * reached NIM (connect failure, HTTP 502) or on frequency control. A repeated `index` is undefined
 * behaviour at NIM, so a read timeout is never retried here.
 *
 * @example
 * const nim = createNimV2Client({ appKey, appSecret, openApiBase: "https://open.yunxinapi.com", timeoutMs: 5000,
 *   retry: { maxAttempts: 3, deadlineMs: 10_000 } });
 * const { messageServerId } = await nim.sendStreamMessageChunk("bot|1|u_42", JSON.stringify(request));
 */
import {
  FREQUENCY_CONTROL_BACKOFF_MS,
  isNimError,
  isRetryableNimCode,
  isStreamMessageRefusalCode,
  NimError,
  NimStreamMessageRefusedError,
} from "./errors.ts";
import type { NimHttpAnswer, NimHttpSender } from "./http.ts";
import { retry } from "./retry.ts";
import {
  isRetryableHttpStatus,
  parseRetryAfter,
  redact,
  resolveSender,
  sendSignedAttempt,
  splitApiBase,
} from "./signed-request.ts";
import type { NimCallOptions } from "./types.ts";

export interface NimStreamChunkResult {
  /** NIM's id of the stream message (a Java long: digits, kept as a string). */
  messageServerId: string;
  messageClientId?: string;
  /** The stream message's creation time, ms, when NIM gave it. */
  createTime?: number;
}

/** The v2 calls im-bridge makes. Tests and the transport depend on this, not on the implementation. */
export interface NimV2Client {
  /**
   * Sends one stream-message chunk. `requestText` is the exact JSON body (the caller writes a
   * 64-bit `message_server_id` as a bare number, which JSON.stringify cannot do).
   */
  sendStreamMessageChunk(
    conversationId: string,
    requestText: string,
    options?: NimCallOptions,
  ): Promise<NimStreamChunkResult>;
  /** Closes the client's own connections (see NimClient.close). Optional, so test doubles need not have it. */
  close?(): Promise<void>;
}

export interface NimV2ClientOptions {
  appKey: string;
  /** Signs requests; never sent, logged or put in an error. */
  appSecret: string;
  /** e.g. `https://open.yunxinapi.com` (no trailing slash needed): NIM_OPEN_API_BASE. */
  openApiBase: string;
  /** Per-attempt timeout in ms. */
  timeoutMs: number;
  retry: { maxAttempts: number; deadlineMs: number; baseDelayMs?: number; maxDelayMs?: number };
  frequencyControlBackoffMs?: number;
  /** A shared HTTP sender, closed by its owner; see NimClientOptions.http. */
  http?: NimHttpSender;
  /** For tests that record or rewrite calls; ignored when `http` is given. */
  fetch?: typeof fetch;
  /** The client's own pool: the most sockets to NIM at once (default 64). */
  connections?: number;
  now?: () => number;
  logger?: { warn(fields: Record<string, unknown>, message: string): void };
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** The path used in errors, logs and the emulator's fault rules. */
export const STREAM_MESSAGE_ENDPOINT = "im/v2/conversations/{conversation_id}/messages/actions/stream_message";

const contentType = "application/json;charset=utf-8";

export function createNimV2Client(options: NimV2ClientOptions): NimV2Client & { close(): Promise<void> } {
  if (!options.appKey) throw new TypeError("createNimV2Client: appKey is required");
  if (!options.appSecret) throw new TypeError("createNimV2Client: appSecret is required");
  if (!(options.timeoutMs > 0)) throw new TypeError("createNimV2Client: timeoutMs must be positive");
  const { origin, basePath } = splitApiBase(options.openApiBase);
  const { sender, owned } = resolveSender(options);
  const now = options.now ?? Date.now;
  const backoffMs = options.frequencyControlBackoffMs ?? FREQUENCY_CONTROL_BACKOFF_MS;
  const policyDeadlineMs = options.retry.deadlineMs > 0 ? options.retry.deadlineMs : Number.POSITIVE_INFINITY;

  return {
    async sendStreamMessageChunk(conversationId, requestText, callOptions) {
      const endpoint = STREAM_MESSAGE_ENDPOINT;
      // `|` is percent-encoded: both forms reach NIM's router as the same id (nim-protocol §5).
      const path = `${basePath}/im/v2/conversations/${encodeURIComponent(conversationId)}/messages/actions/stream_message`;
      const deadlineMs = Math.min(policyDeadlineMs, callOptions?.deadlineMs ?? Number.POSITIVE_INFINITY);
      const answer = await retry(
        async ({ remainingMs }) => {
          const answer = await sendSignedAttempt({
            sender,
            origin,
            path,
            method: "POST",
            contentType,
            body: requestText,
            appKey: options.appKey,
            appSecret: options.appSecret,
            now,
            timeoutMs: Math.min(options.timeoutMs, remainingMs),
            callerSignal: callOptions?.signal,
            endpoint,
          });
          return interpretV2Response(endpoint, answer, options.appSecret, backoffMs);
        },
        { ...options.retry, deadlineMs },
        {
          signal: callOptions?.signal,
          random: options.random,
          sleep: options.sleep,
          onRetry: ({ attempt, error, delayMs }) => {
            const fields = isNimError(error) ? { kind: error.kind, code: error.code, desc: error.desc } : {};
            options.logger?.warn({ endpoint, attempt, delayMs, ...fields }, "NIM call failed; retrying");
          },
        },
      ).catch((error: unknown) => {
        if (!isNimError(error) && callOptions?.signal?.aborted) {
          throw new NimError("aborted", 0, "aborted by the caller", false, endpoint, { cause: error });
        }
        throw error;
      });
      const data = answer.data;
      // Ids of 16+ digits arrive as strings (see parseV2Envelope); shorter ones are exact numbers.
      const rawServerId = data?.message_server_id;
      const messageServerId =
        typeof rawServerId === "number" && Number.isSafeInteger(rawServerId) && rawServerId >= 0
          ? String(rawServerId)
          : rawServerId;
      if (typeof messageServerId !== "string" || !/^\d+$/.test(messageServerId)) {
        // The chunk is at NIM by now, so a malformed success answer must not look retryable.
        throw new NimError("invalid-response", 0, "success answer without data.message_server_id", false, endpoint);
      }
      const result: NimStreamChunkResult = { messageServerId };
      if (typeof data?.message_client_id === "string") result.messageClientId = data.message_client_id;
      const createTime = Number(data?.create_time);
      if (Number.isSafeInteger(createTime)) result.createTime = createTime;
      return result;
    },

    async close(): Promise<void> {
      if (owned) await sender.close();
    },
  };
}

interface V2Envelope {
  code: number;
  msg?: unknown;
  data?: Record<string, unknown>;
}

/** One HTTP answer → the envelope (code 200) or a NimError. */
function interpretV2Response(
  endpoint: string,
  { status, retryAfter, text }: NimHttpAnswer,
  appSecret: string,
  frequencyControlBackoffMs: number,
): V2Envelope {
  if (status < 200 || status > 299) {
    throw new NimError("http", status, `HTTP ${status}`, isRetryableHttpStatus(status), endpoint, {
      retryAfterMs: parseRetryAfter(retryAfter),
    });
  }
  const envelope = parseV2Envelope(text);
  if (envelope === undefined) {
    throw new NimError(
      "invalid-response",
      0,
      `HTTP ${status} body is not a NIM v2 envelope (${text.length} characters)`,
      false,
      endpoint,
    );
  }
  if (envelope.code === 200) return envelope;
  const description = typeof envelope.msg === "string" ? redact(envelope.msg, [appSecret]).slice(0, 300) : "";
  if (isStreamMessageRefusalCode(envelope.code)) {
    throw new NimStreamMessageRefusedError("api", envelope.code, description, false, endpoint);
  }
  const retryable = isRetryableNimCode(envelope.code);
  throw new NimError("api", envelope.code, description, retryable, endpoint, {
    retryAfterMs: retryable ? frequencyControlBackoffMs : undefined,
  });
}

/**
 * Parses the envelope with every integer of 16 or more digits turned into a string first, so a
 * 64-bit `message_server_id` (NIM sends a bare JSON number) keeps every digit.
 */
export function parseV2Envelope(text: string): V2Envelope | undefined {
  try {
    const value: unknown = JSON.parse(quoteLargeIntegers(text));
    if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
    const record = value as Record<string, unknown>;
    const code = typeof record.code === "string" ? Number(record.code) : record.code;
    if (typeof code !== "number" || !Number.isInteger(code)) return undefined;
    const data = record.data;
    const envelope: V2Envelope = { code, msg: record.msg };
    if (typeof data === "object" && data !== null && !Array.isArray(data)) {
      envelope.data = data as Record<string, unknown>;
    }
    return envelope;
  } catch {
    return undefined;
  }
}

/**
 * Rewrites bare integer literals of 16+ digits (beyond what a double keeps exactly) as JSON
 * strings, skipping string contents. Works on any JSON text; leaves invalid JSON invalid.
 */
export function quoteLargeIntegers(text: string): string {
  let result = "";
  let index = 0;
  while (index < text.length) {
    const character = text[index]!;
    if (character === '"') {
      // Copy the whole string literal, honouring escapes.
      let end = index + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      result += text.slice(index, end + 1);
      index = end + 1;
      continue;
    }
    if ((character >= "0" && character <= "9") || character === "-") {
      let end = index + 1;
      while (end < text.length && /[0-9.eE+-]/.test(text[end]!)) end += 1;
      const literal = text.slice(index, end);
      result += /^-?\d{16,}$/.test(literal) ? `"${literal}"` : literal;
      index = end;
      continue;
    }
    result += character;
    index += 1;
  }
  return result;
}
