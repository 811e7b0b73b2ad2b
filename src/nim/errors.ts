/**
 * The one error type for NIM's server API. `code` is NIM's own code from the JSON body
 * (414, 416, 500 …) or a transport pseudo-code; `retryable` decides whether the retry policy
 * tries again: frequency control (416), NIM-side 5xx, timeouts and connection failures are
 * worth another attempt; parameter errors (414), permission (403) and the rest are final.
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

/** Which NIM body codes are worth retrying. */
export function isRetryableNimCode(code: number): boolean {
  return code === 416 || code === 408 || code === 415 || code === 500 || code === 503 || code === 514;
}

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
