/**
 * One signed HTTP attempt against NIM's server APIs, shared by the classic client (form bodies) and
 * the v2 client (JSON bodies): the four auth headers, a per-attempt timeout, and the classification
 * of a failure into a {@link NimError} that says whether another attempt is safe.
 *
 * Retry rule (nim-protocol §10.1 #5, as NIM's own Java and Go server SDKs do it): only a failure
 * where the request *cannot have been processed* is retryable: the TCP/TLS connection was never
 * established (refused, unreachable host or network, DNS failure, connect timeout). A reset or a
 * timeout after the request went out is ambiguous (NIM may have acted on it), so it is final.
 *
 * @module
 */
import { apiCheckSum, createNonce } from "./checksum.ts";
import { NimError } from "./errors.ts";

export interface SignedAttempt {
  fetch: typeof fetch;
  url: string;
  method: "POST" | "GET" | "PATCH" | "DELETE";
  contentType: string;
  body: string | undefined;
  appKey: string;
  /** Signs the request; never sent, logged or put in an error. */
  appSecret: string;
  /** Wall clock in ms; CurTime is floor(now / 1000). */
  now: () => number;
  timeoutMs: number;
  /** The caller's abort signal (a cancelled reply). */
  callerSignal: AbortSignal | undefined;
  /** Names the call in errors and logs. */
  endpoint: string;
}

export interface SignedAnswer {
  response: Response;
  text: string;
}

/**
 * Error codes of a failure to *establish* a connection: nothing was sent, so a retry cannot
 * duplicate anything. undici puts them on `error.cause.code` (and for some, on a nested cause).
 */
const connectErrorCodes: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENETDOWN",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** Sends one signed attempt; resolves with the answer of any HTTP status, throws a NimError otherwise. */
export async function sendSignedAttempt(attempt: SignedAttempt): Promise<SignedAnswer> {
  const { endpoint, callerSignal } = attempt;
  // Whole ms: AbortSignal.timeout rejects fractions, and the remaining budget comes from performance.now().
  const timeoutMs = Math.floor(attempt.timeoutMs);
  if (timeoutMs <= 0) {
    // Nothing was sent, but there is no time left for another attempt either.
    throw new NimError("timeout", 0, "deadline reached before the request was sent", false, endpoint);
  }
  // Nonce and CurTime are fresh per attempt: a retry after a long back-off must not present a
  // CheckSum that is close to NIM's 5-minute validity limit, or one NIM might see as a replay.
  const nonce = createNonce();
  const curTime = String(Math.floor(attempt.now() / 1000));
  const timeoutSignal = AbortSignal.timeout(timeoutMs);
  const signal = callerSignal ? AbortSignal.any([callerSignal, timeoutSignal]) : timeoutSignal;
  try {
    const response = await attempt.fetch(attempt.url, {
      method: attempt.method,
      headers: {
        "Content-Type": attempt.contentType,
        AppKey: attempt.appKey,
        Nonce: nonce,
        CurTime: curTime,
        CheckSum: apiCheckSum(attempt.appSecret, nonce, curTime),
      },
      body: attempt.body,
      signal,
    });
    // Read inside the same try: the timeout must also cover a body that trickles in.
    const text = await response.text();
    return { response, text };
  } catch (error) {
    if (callerSignal?.aborted) {
      throw new NimError("aborted", 0, "aborted by the caller", false, endpoint, { cause: error });
    }
    if (timeoutSignal.aborted) {
      // A read timeout: NIM may have processed the request. Official SDKs never retry it.
      throw new NimError("timeout", 0, `no complete answer within ${timeoutMs} ms`, false, endpoint, {
        cause: error,
      });
    }
    const connectFailure = isConnectError(error);
    const description = describeNetworkError(error);
    throw new NimError(
      "network",
      0,
      connectFailure ? `connect failed: ${description}` : description,
      connectFailure,
      endpoint,
      { cause: error },
    );
  }
}

/** Whether a fetch failure happened before any byte of the request could reach the server. */
export function isConnectError(error: unknown): boolean {
  let current: unknown = error;
  // undici nests: TypeError("fetch failed") → cause (Error with code) → maybe another cause.
  for (let depth = 0; depth < 4 && isRecord(current); depth += 1) {
    const code = current.code;
    if (typeof code === "string" && connectErrorCodes.has(code)) return true;
    current = current.cause;
  }
  return false;
}

/** undici reports "fetch failed" and puts the useful part (ECONNRESET, UND_ERR_SOCKET …) in `cause`. */
export function describeNetworkError(error: unknown): string {
  const cause = isRecord(error) ? error.cause : undefined;
  if (isRecord(cause)) {
    const code = typeof cause.code === "string" ? cause.code : undefined;
    const message = typeof cause.message === "string" ? cause.message : undefined;
    if (code || message) return [code, message].filter(Boolean).join(": ");
  }
  return error instanceof Error ? error.message : "connection failed";
}

/** Whatever NIM echoes back is scrubbed of the secret and of tokens sent in this request. */
export function redact(text: string, secrets: string[]): string {
  let result = text;
  for (const secret of secrets) {
    if (secret && secret.length >= 4) result = result.split(secret).join("[redacted]");
  }
  return result;
}

export function parseRetryAfter(header: string | null): number | undefined {
  if (!header) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/**
 * The retry rule for a non-2xx HTTP status (something in front of NIM answered): only 502 Bad
 * Gateway, which NIM's SDKs retry because the gateway could not reach NIM at all.
 */
export function isRetryableHttpStatus(status: number): boolean {
  return status === 502;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
