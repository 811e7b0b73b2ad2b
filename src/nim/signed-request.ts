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
import { createFetchSender } from "./fetch-sender.ts";
import type { NimHttpAnswer, NimHttpSender } from "./http.ts";
import { createPoolSender } from "./pool-sender.ts";

export interface SignedAttempt {
  sender: NimHttpSender;
  /** Scheme, host and port of the API (see {@link splitApiBase}). */
  origin: string;
  /** Path and query, starting with `/`. */
  path: string;
  method: "POST" | "GET" | "PATCH" | "DELETE";
  contentType: string;
  body: string | undefined;
  appKey: string;
  /** Signs the request; never sent, logged or put in an error. */
  appSecret: string;
  /** Wall clock in ms; CurTime is floor(now / 1000). */
  now: () => number;
  /** The whole attempt: waiting for a socket, connecting, sending, the headers and the body. */
  timeoutMs: number;
  /** The caller's abort signal (a cancelled reply). */
  callerSignal: AbortSignal | undefined;
  /** Names the call in errors and logs. */
  endpoint: string;
}

/**
 * Error codes of a failure to *establish* a connection: nothing was sent, so a retry cannot
 * duplicate anything. undici's own API puts them on the error itself; its `fetch` wraps that error
 * as the `cause` of a TypeError("fetch failed") (and for some, on a nested cause).
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

/**
 * Sends one signed attempt; resolves with the answer of any HTTP status, throws a NimError otherwise.
 *
 * One timer and one AbortController per attempt, with the caller's signal linked by a listener that
 * is removed afterwards: cheaper than `AbortSignal.timeout` + `AbortSignal.any`, which allocate
 * signals that outlive the call. The returned promise settles as soon as the timer fires or the
 * caller aborts, even while the request still waits for a free socket (undici only notices an abort
 * of a queued request when it reaches a socket, and then never sends it).
 */
export function sendSignedAttempt(attempt: SignedAttempt): Promise<NimHttpAnswer> {
  const { endpoint, callerSignal } = attempt;
  const timeoutMs = Math.floor(attempt.timeoutMs);
  if (timeoutMs <= 0) {
    // Nothing was sent, but there is no time left for another attempt either.
    return Promise.reject(new NimError("timeout", 0, "deadline reached before the request was sent", false, endpoint));
  }
  if (callerSignal?.aborted) return Promise.reject(abortedError(endpoint, callerSignal.reason));
  // Nonce and CurTime are fresh per attempt: a retry after a long back-off must not present a
  // CheckSum that is close to NIM's 5-minute validity limit, or one NIM might see as a replay.
  const nonce = createNonce();
  const curTime = String(Math.floor(attempt.now() / 1000));
  const request = {
    origin: attempt.origin,
    path: attempt.path,
    method: attempt.method,
    headers: {
      "Content-Type": attempt.contentType,
      AppKey: attempt.appKey,
      Nonce: nonce,
      CurTime: curTime,
      CheckSum: apiCheckSum(attempt.appSecret, nonce, curTime),
    },
    body: attempt.body,
  };

  return new Promise<NimHttpAnswer>((resolve, reject) => {
    const controller = new AbortController();
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      callerSignal?.removeEventListener("abort", onCallerAbort);
      return true;
    };
    let dispatched = false;
    const onTimeout = (): void => {
      if (!settle()) return;
      // Still waiting for a free connection: nothing was sent, so another attempt is safe.
      // Otherwise a read timeout: NIM may have processed the request. Official SDKs never retry it.
      const error = dispatched
        ? new NimError("timeout", 0, `no complete answer within ${timeoutMs} ms`, false, endpoint)
        : new NimError("network", 0, `no free connection within ${timeoutMs} ms; not sent`, true, endpoint);
      reject(error);
      controller.abort(error);
    };
    function onCallerAbort(): void {
      if (!settle()) return;
      const error = abortedError(endpoint, callerSignal?.reason);
      reject(error);
      controller.abort(error);
    }
    // One timer: for the wait for a connection (if there is one), then again from the dispatch for
    // the answer, so a request that waited for a socket still gets its whole time with NIM.
    let timer: NodeJS.Timeout | undefined;
    const startTimer = () => {
      clearTimeout(timer);
      timer = setTimeout(onTimeout, timeoutMs);
      // An in-flight request keeps the process alive through its socket; the timer need not.
      timer.unref();
    };
    const onDispatch = () => {
      if (settled || dispatched) return;
      dispatched = true;
      startTimer();
    };
    callerSignal?.addEventListener("abort", onCallerAbort, { once: true });

    let sending: Promise<NimHttpAnswer>;
    try {
      sending = attempt.sender.send(request, controller.signal, onDispatch);
    } catch (error) {
      sending = Promise.reject(error);
    }
    if (!dispatched && !settled) startTimer();
    sending.then(
      (answer) => {
        if (settle()) resolve(answer);
      },
      (error: unknown) => {
        // After a timeout or an abort this is the sender giving up on the request: already reported.
        if (settle()) reject(networkError(error, endpoint));
      },
    );
  });
}

function abortedError(endpoint: string, cause: unknown): NimError {
  return new NimError("aborted", 0, "aborted by the caller", false, endpoint, { cause });
}

function networkError(error: unknown, endpoint: string): NimError {
  const connectFailure = isConnectError(error);
  const description = describeNetworkError(error);
  return new NimError(
    "network",
    0,
    connectFailure ? `connect failed: ${description}` : description,
    connectFailure,
    endpoint,
    { cause: error },
  );
}

/**
 * The sender a client uses: an injected one (shared, so the caller closes it), else a fetch-based
 * one over an injected `fetch` (tests), else the client's own bounded pool, which it must close.
 */
export function resolveSender(options: { http?: NimHttpSender; fetch?: typeof fetch; connections?: number }): {
  sender: NimHttpSender;
  owned: boolean;
} {
  if (options.http) return { sender: options.http, owned: false };
  if (options.fetch) return { sender: createFetchSender(options.fetch), owned: false };
  return { sender: createPoolSender({ connections: options.connections }), owned: true };
}

/**
 * Splits an API base such as `https://api.yunxinapi.com/nimserver/` into the origin a pool is keyed
 * by and the path prefix of every call (without a trailing slash), once per client, not per call.
 */
export function splitApiBase(base: string): { origin: string; basePath: string } {
  const url = new URL(base);
  return { origin: url.origin, basePath: url.pathname.replace(/\/+$/, "") };
}

/** Whether a send failed before any byte of the request could reach the server. */
export function isConnectError(error: unknown): boolean {
  let current: unknown = error;
  // undici's request() throws the Error with the code; its fetch nests: TypeError("fetch failed") →
  // cause (Error with code) → maybe another cause.
  for (let depth = 0; depth < 4 && isRecord(current); depth += 1) {
    const code = current.code;
    if (typeof code === "string" && connectErrorCodes.has(code)) return true;
    current = current.cause;
  }
  return false;
}

/**
 * The first `code: message` along the cause chain: undici's request() throws e.g. a SocketError
 * (UND_ERR_SOCKET) itself, its fetch reports "fetch failed" with that error as the `cause`.
 */
export function describeNetworkError(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && isRecord(current); depth += 1) {
    if (typeof current.code === "string") {
      return typeof current.message === "string" && current.message
        ? `${current.code}: ${current.message}`
        : current.code;
    }
    current = current.cause;
  }
  const cause = isRecord(error) ? error.cause : undefined;
  if (isRecord(cause) && typeof cause.message === "string" && cause.message) return cause.message;
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

export function parseRetryAfter(header: string | null | undefined): number | undefined {
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
