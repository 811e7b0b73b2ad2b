/**
 * The seam between NIM's signed calls and the wire: one HTTP request out, one complete answer back.
 * Imports no implementation, so the clients depend on this and tests can pass any sender. The
 * production sender is `createPoolSender` (pool-sender.ts, a bounded keep-alive undici pool per
 * origin); `createFetchSender` (fetch-sender.ts) serves tests that inject a `fetch`.
 *
 * Timeouts and caller aborts are not the sender's concern: signed-request.ts owns the one timer and
 * the one AbortController of an attempt, and classifies every failure into a NimError.
 *
 * @module
 */

export interface NimHttpRequest {
  /** Scheme, host and port, e.g. `https://api.yunxinapi.com`: senders keep one pool per origin. */
  origin: string;
  /** Path and query, starting with `/`, e.g. `/nimserver/msg/sendMsg.action`. */
  path: string;
  method: "POST" | "GET" | "PATCH" | "DELETE";
  headers: Record<string, string>;
  body: string | undefined;
}

/** A complete answer: the whole body has been read, whatever the status. */
export interface NimHttpAnswer {
  status: number;
  /** The `Retry-After` header, if any (a gateway's 502/503 may carry one). */
  retryAfter: string | undefined;
  text: string;
}

export interface NimHttpSender {
  /**
   * Sends one request and reads the whole answer. Rejects when `signal` aborts (with any error:
   * the caller already knows why it aborted) or when the connection fails; an error's `code` (or
   * its `cause`'s) tells a connect failure from a failure after sending (signed-request.ts).
   * Calls `onDispatch` when the request goes out on a connection, after any wait for a free one:
   * the attempt's time limit for an answer counts from there, and a request that never got that
   * far was never sent (so another attempt is safe).
   */
  send(request: NimHttpRequest, signal: AbortSignal, onDispatch: () => void): Promise<NimHttpAnswer>;
  /** Closes idle connections and refuses new requests; in-flight requests finish first. */
  close(): Promise<void>;
}
