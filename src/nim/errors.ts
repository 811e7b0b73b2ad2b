/**
 * The one error type for NIM's server API. `code` is NIM's own code from the JSON body
 * (414, 416, 500, 6-digit v2 codes …) or a transport pseudo-code; `retryable` decides whether the
 * retry policy tries again. Aligned with NIM's own server SDKs (nim-protocol §10.1 #5): only what
 * cannot have been processed is retried (a connection that was never established, HTTP 502 from a
 * gateway), plus frequency control (416), which asks for a pause of seconds. A read timeout, a
 * reset connection, NIM's 5xx codes, 408/415 (client-side SDK codes the server never sends) and
 * everything else are final: NIM may have acted on the request.
 */
export type NimErrorKind =
  | "api"
  | "http"
  | "timeout"
  | "network"
  | "invalid-response"
  | "aborted"
  /** Rejected locally before any HTTP call (e.g. a body over NIM's 5000-character limit). Never retryable. */
  | "invalid-request";

export class NimError extends Error {
  override readonly name = "NimError";
  /** A server-requested pause (HTTP `Retry-After`), which the retry policy uses as a floor for its back-off. */
  readonly retryAfterMs: number | undefined;
  constructor(
    readonly kind: NimErrorKind,
    /** NIM's `code`, or the HTTP status for `http`, or 0 for transport failures. */
    readonly code: number,
    /** NIM's `desc` (or a transport description). Never contains the AppSecret or a token. */
    readonly desc: string,
    readonly retryable: boolean,
    readonly endpoint: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(`NIM ${endpoint} failed: ${kind === "api" ? `code ${code}` : kind}${desc ? ` (${desc})` : ""}`, options);
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/**
 * Which NIM body codes are worth retrying: only frequency control, 416 (classic and v2) and the v2
 * message domain's rate limit 107323. Both come with a back-off of seconds (see
 * {@link FREQUENCY_CONTROL_BACKOFF_MS}), never an immediate retry, which would only burn quota.
 */
export function isRetryableNimCode(code: number): boolean {
  return code === 416 || code === 107323;
}

/**
 * The least pause before retrying after frequency control. NIM blocks sendBatchMsg for 60 s after
 * a 416 and documents no window for the other calls; a retry within milliseconds is refused again.
 */
export const FREQUENCY_CONTROL_BACKOFF_MS = 1_000;

export function isNimError(error: unknown): error is NimError {
  return error instanceof NimError;
}

/**
 * NIM's answer to user/create.action for an accid that exists: `{"desc":"already register","code":414}`.
 * It also shows up when a create whose response was lost (timeout) is retried and the first attempt
 * had in fact succeeded, so callers treat it as "exists" and set a token with update/refreshToken.
 */
export function isAlreadyRegisteredError(error: unknown): boolean {
  return isNimError(error) && error.kind === "api" && error.code === 414 && /already register/i.test(error.desc);
}

/**
 * NIM refused a v2 stream message as such, not one chunk of it: the app has no stream-message
 * permission (a console or support switch), or the conversation does not allow it. The reply can
 * still reach the user as custom segments; the pipeline falls back when this comes before anything
 * of the reply was shown.
 *
 * UNCONFIRMED at NIM: the exact code. NIM documents 403 "illegal operation or no permission", and
 * v2 codes are a domain prefix before a classic code (102404 account not exist, 108404 team not
 * exist), so 403 and any six-digit code ending in 403 count (see {@link isStreamMessageRefusalCode}).
 */
export class NimStreamMessageRefusedError extends NimError {
  /** Lets logs and audit rows tell a refusal of the feature from a refusal of one chunk. */
  readonly streamMessageRefused = true;
}

/** Whether a v2 code means "stream messages are not allowed here" (see {@link NimStreamMessageRefusedError}). */
export function isStreamMessageRefusalCode(code: number): boolean {
  return code === 403 || (code >= 100_000 && code <= 999_999 && code % 1000 === 403);
}

export function isStreamMessageRefusal(error: unknown): error is NimStreamMessageRefusedError {
  return error instanceof NimStreamMessageRefusedError;
}
